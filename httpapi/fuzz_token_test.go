package httpapi_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
)

// FuzzTokenEndpoint sends fuzzed token requests (Content-Type,
// Authorization and the form) to a real node over loopback. The
// placeholders {appId}, {secret} and {refresh} in the inputs become a real
// application id, its secret and a refresh token, so the fuzzer also works
// around credentials that are right. Every answer must be a success of the
// RFC 6749 shape, an RFC 6749 error, or the contract's 429/503; never a 5xx,
// never without Cache-Control: no-store, and never echoing a secret.
func FuzzTokenEndpoint(f *testing.F) {
	form := "application/x-www-form-urlencoded"
	for _, s := range []struct{ ct, auth, body string }{
		{form, "", "grant_type=client_credentials&client_id={appId}&client_secret={secret}"},
		{form, "Basic {basic}", "grant_type=client_credentials"},
		{form, "", "grant_type=password&username=admin&password=" + testnode.AdminPassword},
		{form, "", "grant_type=password&username=ADMIN&password=wrong-password"},
		{form, "", "grant_type=password&username=nobody&password=whatever1"},
		{form, "", "grant_type=refresh_token&refresh_token={refresh}"},
		{form, "", "grant_type=refresh_token&refresh_token="},
		{form, "", "grant_type=client_credentials&client_id={appId}&client_secret={secret}x"},
		{form, "", "grant_type=client_credentials&client_id={appId}"},
		{form, "Basic %%%", "grant_type=client_credentials"},
		{form, "Bearer x", "grant_type=password&username=admin"},
		{form, "", "grant_type=implicit"}, {form, "", ""}, {form, "", "grant_type="}, {form, "", "%zz=1"},
		{form, "", "grant_type=password&grant_type=client_credentials&username=admin&password=x"},
		{form + "; charset=utf-8", "", "grant_type=password&username=admin&password=" + testnode.AdminPassword},
		{"application/json", "", `{"grant_type":"password","username":"admin","password":"x"}`},
		{"", "", "grant_type=password"}, {"multipart/form-data; boundary=x", "", "--x--"},
		{form, "", "grant_type=password&username=" + strings.Repeat("a", 4000) + "&password=" + strings.Repeat("p", 4000)},
		{form, "", "grant_type=password&username=admin%00&password=" + testnode.AdminPassword},
	} {
		f.Add(s.ct, s.auth, []byte(s.body))
	}
	n := testnode.Start(f, nil)
	c := &http.Client{Timeout: 30 * time.Second}
	adminTok := tokenFor(f, c, n.URL, url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {testnode.AdminPassword}})
	var app struct {
		AppID string `json:"appId"`
		Creds []struct {
			SecretText string `json:"secretText"`
		} `json:"passwordCredentials"`
	}
	body, _ := json.Marshal(map[string]string{"displayName": "Fuzz", "targetHostName": "fuzz.example.com"})
	req, _ := http.NewRequest(http.MethodPost, n.URL+"/v1.0/applications", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+adminTok.Access)
	res, err := c.Do(req)
	if err != nil {
		f.Fatal(err)
	}
	if err := json.NewDecoder(res.Body).Decode(&app); err != nil || res.StatusCode != 201 || len(app.Creds) != 1 {
		f.Fatalf("create application: %d %v", res.StatusCode, err)
	}
	res.Body.Close()
	secret := app.Creds[0].SecretText
	subst := strings.NewReplacer("{appId}", app.AppID, "{secret}", secret, "{refresh}", adminTok.Refresh)

	f.Fuzz(func(t *testing.T, ct, auth string, form []byte) {
		form = []byte(subst.Replace(string(form)))
		auth = subst.Replace(auth)
		if strings.Contains(auth, "{basic}") { // a well-formed Basic credential
			auth = strings.ReplaceAll(auth, "{basic}", basicOf(app.AppID, secret))
		}
		req, err := http.NewRequest(http.MethodPost, n.URL+"/oauth2/v2.0/token", bytes.NewReader(form))
		if err != nil {
			t.Fatal(err)
		}
		// Header values the client refuses to send are not the server's
		// concern.
		for _, v := range []string{ct, auth} {
			if strings.ContainsAny(v, "\r\n\x00") || strings.TrimSpace(v) != v || !validHeaderValue(v) {
				return
			}
		}
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("token request: %v", err)
		}
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		if err != nil {
			t.Fatalf("read answer: %v", err)
		}
		what := strconv.Quote(ct) + " " + strconv.Quote(auth) + " " + strconv.Quote(string(form)) + " → " + res.Status + " " + string(b)
		if res.Header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", what, res.Header.Get("Cache-Control"))
		}
		if bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte(testnode.AdminPassword)) {
			t.Fatalf("%s: the answer echoes a secret", what)
		}
		switch res.StatusCode {
		case http.StatusOK:
			var ok struct {
				TokenType   string `json:"token_type"`
				AccessToken string `json:"access_token"`
				ExpiresIn   int    `json:"expires_in"`
			}
			if err := json.Unmarshal(b, &ok); err != nil || ok.TokenType != "Bearer" || len(ok.AccessToken) < 32 || ok.ExpiresIn != 3600 {
				t.Fatalf("%s: not a token answer (%v)", what, err)
			}
		case http.StatusBadRequest, http.StatusUnauthorized:
			var e struct {
				Error string `json:"error"`
				Desc  string `json:"error_description"`
			}
			dec := json.NewDecoder(bytes.NewReader(b))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&e); err != nil || e.Desc == "" {
				t.Fatalf("%s: not an RFC 6749 error (%v)", what, err)
			}
			want := map[string]bool{"invalid_request": true, "invalid_grant": true, "unsupported_grant_type": true}
			if res.StatusCode == http.StatusUnauthorized {
				want = map[string]bool{"invalid_client": true}
				if res.Header.Get("WWW-Authenticate") == "" {
					t.Errorf("%s: 401 without WWW-Authenticate", what)
				}
			}
			if !want[e.Error] {
				t.Fatalf("%s: error code %q", what, e.Error)
			}
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &e); err != nil || e.Error.Code == "" || e.Error.Message == "" {
				t.Fatalf("%s: not the contract's error (%v)", what, err)
			}
			if s, err := strconv.Atoi(res.Header.Get("Retry-After")); err != nil || s < 1 {
				t.Fatalf("%s: Retry-After %q", what, res.Header.Get("Retry-After"))
			}
		default:
			t.Fatalf("%s: unexpected status", what)
		}
	})
}

func basicOf(id, secret string) string {
	return base64.StdEncoding.EncodeToString([]byte(id + ":" + secret))
}

// tokenFor signs in with form outside a test (the fuzz target's setup).
func tokenFor(tb testing.TB, c *http.Client, base string, form url.Values) tokens {
	tb.Helper()
	res, err := c.Post(base+"/oauth2/v2.0/token", "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	if err != nil {
		tb.Fatal(err)
	}
	defer res.Body.Close()
	var tk tokens
	if err := json.NewDecoder(res.Body).Decode(&tk); err != nil || res.StatusCode != http.StatusOK || tk.Access == "" {
		tb.Fatalf("sign in: %d %v", res.StatusCode, err)
	}
	return tk
}

// validHeaderValue is what net/http sends: no control characters but tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}
