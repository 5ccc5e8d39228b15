package httpapi

// Fuzz targets for the outside input that fuzz_test.go does not cover: the
// user and application bodies, the query parameters of listings (with the
// paging and delta tokens they carry), and stream cursors. Their seed
// corpora are in testdata/fuzz/<target>/ as well as in f.Add below; how to
// run them for long is in docs/fuzzing.md.

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/herald-notify/herald/resource"
)

// FuzzDecodeBodies decodes and validates the bodies fuzz_test.go leaves
// out, the way their handlers do: those of /users and /applications, and a
// subscription's PATCH. The first byte picks the body kind; password hashing
// is left out (it is argon2id over an accepted password, and costs seconds
// per run, not coverage).
func FuzzDecodeBodies(f *testing.F) {
	seeds := map[byte][]string{
		0: {`{"userPrincipalName":"alice","displayName":"Alice","password":"correct horse","roles":["user"]}`,
			`{"userPrincipalName":"a.b+c@example.com","password":"12345678","roles":["admin","user"],"accountEnabled":false}`,
			`{"userPrincipalName":"","password":"x"}`, `{"userPrincipalName":"ALICE","password":"pässwörd","roles":["Admin"]}`,
			`{"userPrincipalName":"-x","password":"12345678"}`, `{"userPrincipalName":"x","password":"12345678","roles":["root"]}`,
			`{"userPrincipalName":"x","password":"12345678","roles":[]}`, `{"userPrincipalName":"x","password":"1234567"}`,
			`{"userPrincipalName":"x","password":"12345678","id":"forged"}`, `{"userPrincipalName":"x\u0000y","password":"12345678"}`},
		1: {`{"displayName":"Alice B"}`, `{"password":"new password"}`, `{"roles":["admin"]}`, `{"roles":[]}`,
			`{"accountEnabled":false}`, `{"displayName":"  "}`, `{"roles":null}`, `{"userPrincipalName":"renamed"}`},
		2: {`{"displayName":"Contoso Tasks","targetHostName":"tasks.contoso.com"}`, `{"displayName":"x","targetHostName":"TASKS.contoso.com"}`,
			`{"displayName":"x","targetHostName":"tasks.contoso.com."}`, `{"displayName":"x","targetHostName":"127.0.0.1"}`,
			`{"displayName":"","targetHostName":"a.b"}`, `{"displayName":"x","targetHostName":"-a.b"}`},
		3: {`{"displayName":"renamed"}`, `{"targetHostName":"other.example"}`, `{}`},
		4: {`{"displayName":"ci"}`, `{"displayName":"ci","endDateTime":"2027-01-01T00:00:00Z"}`, `{"endDateTime":"2020-01-01T00:00:00Z"}`,
			`{"endDateTime":"yesterday"}`, `{"displayName":"` + strings.Repeat("n", 257) + `"}`},
		5: {`{"keyId":"b0a5c2f4-1a2b-4c3d-9e8f-0123456789ab"}`, `{"keyId":""}`, `{"keyId":5}`, `{}`},
		6: {`{"deviceName":"Alice's phone"}`, `{"expirationDateTime":"2026-12-27T00:00:00.000Z"}`, `{"expirationDateTime":"2020-01-01T00:00:00Z"}`,
			`{"expirationDateTime":"2027-06-01T00:00:00Z"}`, `{"expirationDateTime":null}`, `{}`, `{"deviceName":null}`,
			`{"deviceName":"` + strings.Repeat("d", 257) + `"}`, `{"status":"active"}`},
	}
	for kind, ss := range seeds {
		for _, s := range ss {
			f.Add(append([]byte{kind}, s...))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) == 0 {
			return
		}
		kind, body := data[0]%7, data[1:]
		var err error
		switch kind {
		case 0:
			var in userInput
			if err = decodeBytes(body, &in); err == nil {
				err = validateUserInput(&in)
			}
		case 1:
			var in userPatchInput
			if err = decodeBytes(body, &in); err == nil {
				err = validateUserPatch(&in)
			}
		case 2:
			var in appInput
			if err = decodeBytes(body, &in); err == nil {
				if err = asErr(resource.ValidateDisplayName(in.DisplayName, true)); err == nil {
					err = asErr(resource.ValidateHostName("targetHostName", in.TargetHostName))
					if err == nil && (in.TargetHostName != strings.ToLower(in.TargetHostName) || strings.ContainsAny(in.TargetHostName, "/:@ ")) {
						t.Fatalf("accepted targetHostName %q", in.TargetHostName)
					}
				}
			}
		case 3:
			var in appPatchInput
			if err = decodeBytes(body, &in); err == nil && in.DisplayName != nil {
				err = asErr(resource.ValidateDisplayName(*in.DisplayName, true))
			}
		case 4:
			var in passwordInput
			if err = decodeBytes(body, &in); err == nil {
				var c *resource.CredentialRecord
				c, err = newCredential(strings.TrimSpace(in.DisplayName), in.EndDateTime, fuzzNow)
				if err == nil && (c.SecretText == "" || !strings.HasPrefix(c.SecretText, c.Hint) || !c.EndDateTime.After(fuzzNow)) {
					t.Fatalf("credential %+v", c.PasswordCredential)
				}
			}
		case 5:
			var in removePasswordInput
			err = decodeBytes(body, &in)
		case 6: // patchSubscription's checks
			var in resource.SubscriptionPatch
			if err = decodeBytes(body, &in); err == nil {
				switch {
				case in.DeviceName == nil && in.ExpirationDateTime == nil:
					err = resource.Invalid("", "PATCH takes deviceName and/or expirationDateTime.")
				case in.DeviceName != nil && len(*in.DeviceName) > 256:
					err = resource.Invalid("deviceName", "deviceName must have at most 256 characters.")
				case in.ExpirationDateTime != nil:
					exp, verr := resource.SubscriptionExpiry(in.ExpirationDateTime, fuzzNow)
					if err = asErr(verr); err == nil && (!exp.After(fuzzNow) || exp.After(fuzzNow.Add(resource.MaxSubscriptionTTL))) {
						t.Fatalf("accepted expiry %v", exp)
					}
				}
			}
		}
		if err != nil {
			fuzzCheckError(t, "directory body", err, resource.CodeInvalidRequest)
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("accepted a body that is not UTF-8: %q", body)
		}
	})
}

// asErr keeps a nil *resource.Error from becoming a non-nil error.
func asErr(e *resource.Error) error {
	if e == nil {
		return nil
	}
	return e
}

// validateUserInput is createUser's check (NewUserRecord) without the hash.
func validateUserInput(in *userInput) error {
	if err := resource.ValidateUPN(in.UserPrincipalName); err != nil {
		return err
	}
	if err := resource.ValidateDisplayName(in.DisplayName, false); err != nil {
		return err
	}
	if err := resource.ValidatePassword(in.Password); err != nil {
		return err
	}
	roles, err := resource.ValidateRoles(in.Roles)
	if err != nil {
		return err
	}
	for _, r := range roles {
		if r != resource.RoleUser && r != resource.RoleAdmin {
			return resource.Invalid("roles", "validated roles hold %q", r)
		}
	}
	return nil
}

// validateUserPatch is patchUser's check without the hash.
func validateUserPatch(in *userPatchInput) error {
	if in.DisplayName != nil {
		if err := resource.ValidateDisplayName(*in.DisplayName, true); err != nil {
			return err
		}
	}
	if in.Password != nil {
		if err := resource.ValidatePassword(*in.Password); err != nil {
			return err
		}
	}
	if in.Roles != nil {
		if len(in.Roles) == 0 {
			return resource.Invalid("roles", "roles must name at least one role.")
		}
		if _, err := resource.ValidateRoles(in.Roles); err != nil {
			return err
		}
	}
	return nil
}

// FuzzListQuery feeds a raw query string to every parser of listing
// queries: $top, $skiptoken, the feed's filters and $deltatoken. What they
// accept must survive the server's own links: a nextLink or deltaLink built
// from the request parses back to the same page and filters.
func FuzzListQuery(f *testing.F) {
	for _, s := range []string{
		"", "$top=1", "$top=1000", "$top=0", "$top=1001", "$top=-1", "$top=+5", "$top=05", "$top=1e2", "$top=99999999999999999999",
		"$skiptoken=" + encodeToken("01J9Z6W8Q5X3V7B2N4M6K8P0R2"), "$skiptoken=" + encodeToken("a/b"), "$skiptoken=%%%", "$skiptoken=AAAA",
		"$skiptoken=" + encodeToken(strings.Repeat("k", 129)), "$skiptoken=YQ", "$skiptoken=YR",
		"readState=read", "readState=UNREAD", "readState=seen", "userActionState=dismissed", "userActionState=x",
		"status=any", "status=DELETED", "status=gone", "targetHostName=tasks.contoso.com&groupName=g%26h",
		"$deltatoken=" + deltaToken{seq: 42}.String(), "$deltatoken=" + deltaToken{initial: true, seq: 7, after: "0abc"}.String(),
		"$deltatoken=" + deltaToken{initial: true, seq: 7, after: "33nc6u68ftoh53t48dv88gc2vc"}.String(),
		"$deltatoken=" + encodeToken("d.-1"), "$deltatoken=" + encodeToken("i.1."), "$deltatoken=" + encodeToken("d.1.x"),
		"$deltatoken=" + encodeToken("x.1"), "$deltatoken=" + encodeToken("d.18446744073709551616"), "$deltatoken=ZC4x",
		"$top=5&$top=6", "access_token=secret&$top=2", "groupName=%ff%fe", "groupName=a;b", "$filter=readState eq 'read'",
		"$select=id&$skip=3&$count=true", "a=%zz",
	} {
		f.Add(s)
	}
	s := &Server{opts: Options{PublicURL: "https://herald.example.com/"}}
	f.Fuzz(func(t *testing.T, raw string) {
		r, err := http.NewRequest(http.MethodGet, "http://127.0.0.1/v1.0/me/notifications", nil)
		if err != nil {
			t.Fatal(err)
		}
		r.URL.RawQuery = raw
		n, terr := top(r, 100)
		if terr != nil {
			fuzzCheckError(t, "$top", terr, resource.CodeInvalidRequest)
		} else if n < 1 || n > 1000 {
			t.Fatalf("accepted $top %d", n)
		}
		after, serr := skipToken(r)
		if serr != nil {
			fuzzCheckError(t, "$skiptoken", serr, resource.CodeInvalidRequest)
		} else if after != "" && !isKey(after) {
			t.Fatalf("accepted a $skiptoken for key %q", after)
		}
		ff, ferr := parseFeedFilter(r)
		if ferr != nil {
			fuzzCheckError(t, "filter", ferr, resource.CodeInvalidRequest)
		}
		dt, dok := parseDeltaToken(r.URL.Query().Get("$deltatoken"))
		if dok {
			if again, ok := parseDeltaToken(dt.String()); !ok || again != dt {
				t.Fatalf("delta token %+v does not round-trip: %+v %v", dt, again, ok)
			}
			if dt.initial && !resource.IsNotificationID(dt.after) {
				t.Fatalf("accepted an initial delta token after %q", dt.after)
			}
		}
		// The server's links: the next page of this very query.
		for _, next := range []struct {
			key, value string
		}{{"$skiptoken", encodeToken("01J9Z6W8Q5X3V7B2N4M6K8P0R2")}, {"$deltatoken", deltaToken{initial: true, seq: 9, after: "k-1"}.String()}} {
			link := s.link(r, next.key, next.value)
			u, err := url.Parse(link)
			if err != nil {
				t.Fatalf("link %q does not parse: %v", link, err)
			}
			if u.Scheme != "https" || u.Host != "herald.example.com" || u.Path != "/v1.0/me/notifications" {
				t.Fatalf("link %q leaves the server's listing", link)
			}
			q := u.Query()
			if q.Has("access_token") {
				t.Fatalf("link %q carries the access token", link)
			}
			if q.Get(next.key) != next.value {
				t.Fatalf("link %q carries %s %q, want %q", link, next.key, q.Get(next.key), next.value)
			}
			lr := &http.Request{Method: http.MethodGet, URL: u}
			if terr == nil {
				if n2, err := top(lr, 100); err != nil || n2 != n {
					t.Fatalf("link %q: $top %d %v, want %d", link, n2, err, n)
				}
			}
			if ferr == nil {
				ff2, err := parseFeedFilter(lr)
				if err != nil || *ff2 != *ff {
					t.Fatalf("link %q: filter %+v %v, want %+v", link, ff2, err, ff)
				}
			}
		}
	})
}

// FuzzStreamCursor checks the live stream's cursors (Last-Event-ID and
// ?lastEventId=): only the canonical spelling of a position is accepted, and
// every position has one.
func FuzzStreamCursor(f *testing.F) {
	for _, s := range []string{"", "c", "c0", "c1", "c00", "cA", "ca", "c-1", "c+1", "C1", "c 1", "c3w5e11264sgsf",
		"c3w5e11264sgsg", resource.FormatCursor(1<<63 + 12345), "1", "c1\n", "c1\x00", "cé"} {
		f.Add(s, uint64(len(s)))
	}
	f.Fuzz(func(t *testing.T, s string, seq uint64) {
		if got, ok := resource.ParseCursor(resource.FormatCursor(seq)); !ok || got != seq {
			t.Fatalf("cursor of %d parses to %d %v", seq, got, ok)
		}
		v, ok := resource.ParseCursor(s)
		if !ok {
			return
		}
		if resource.FormatCursor(v) != s {
			t.Fatalf("accepted cursor %q for %d, whose cursor is %q", s, v, resource.FormatCursor(v))
		}
		// A cursor goes back out in an SSE id: line; it must not break one.
		if strings.ContainsAny(s, "\r\n\x00") || !utf8.ValidString(s) || strconv.Quote(s) != `"`+s+`"` {
			t.Fatalf("accepted cursor %q cannot be sent as an event id", s)
		}
	})
}
