package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/client"
)

// fixture is what a run set up through the public API: an application
// with its token, and users, each signed in with a subscription (UNSID)
// the application sends through.
type fixture struct {
	e        *env
	host     string
	appID    string // the application's object id, for the clean-up
	appToken string
	users    []*benchUser
	tag      string
	mu       sync.Mutex // guards benchUser.unsid
}

type benchUser struct {
	id, upn, token string
	// unsid is the subscription the application sends through; subs are
	// all the user's subscriptions' 201 answers (webPush, webhook).
	unsid string
}

// newFixture registers the application and signs it in.
func newFixture(ctx context.Context, e *env) (*fixture, error) {
	f := &fixture{e: e, tag: strconv.FormatInt(time.Now().UnixNano(), 36)}
	f.host = "bench-" + f.tag + ".invalid"
	app, err := e.admin.CreateApplication(ctx, client.NewApplication{DisplayName: "herald bench", TargetHostName: f.host})
	if err != nil {
		return nil, fmt.Errorf("create application: %w", err)
	}
	f.appID = app.ID
	anon, _ := client.New(e.urls[0], client.WithHTTPClient(e.hc))
	at, err := anon.ClientCredentialsToken(ctx, app.AppID, app.PasswordCredentials[0].SecretText)
	if err != nil {
		f.cleanup()
		return nil, err
	}
	f.appToken = at.AccessToken
	return f, nil
}

// addUsers creates n users and signs each in (through node i%nodes, so a
// cluster's every node serves some), four at a time: each costs the server
// two password hashes, whose memory the run should not measure as its own.
func (f *fixture) addUsers(ctx context.Context, n int, prog *progress) error {
	const pw = "bench-password-1"
	f.users = make([]*benchUser, n)
	var next, done atomic.Int64
	prog.phase("users")
	prog.show(func() string { return fmt.Sprintf("%d of %d users", done.Load(), n) })
	errs := make(chan error, 4)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				upn := fmt.Sprintf("bench-%s-%d", f.tag, i)
				u, err := f.e.admin.CreateUser(ctx, client.NewUser{UserPrincipalName: upn, Password: pw})
				if err != nil {
					errs <- fmt.Errorf("create user: %w", err)
					return
				}
				f.users[i] = &benchUser{id: u.ID, upn: upn}
				anon, _ := client.New(f.e.url(i), client.WithHTTPClient(f.e.hc))
				t, err := anon.PasswordToken(ctx, upn, pw)
				if err != nil {
					errs <- fmt.Errorf("sign in as %s: %w", upn, err)
					return
				}
				f.users[i].token = t.AccessToken
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

// subscribe registers a subscription of user u with channel and returns
// the 201 answer.
func (f *fixture) subscribe(ctx context.Context, i int, channel map[string]any) (map[string]any, error) {
	u := f.users[i]
	platform := "web"
	if channel["type"] == "webhook" {
		platform = "windows"
	}
	anon, _ := client.New(f.e.url(i), client.WithHTTPClient(f.e.hc))
	var sub map[string]any
	err := anon.With(client.WithToken(u.token)).Do(ctx, http.MethodPost, "/v1.0/me/notificationSubscriptions",
		map[string]any{"targetHostName": f.host, "platformType": platform, "channel": channel}, &sub)
	if err != nil {
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	id, _ := sub["id"].(string)
	if id == "" {
		return nil, errors.New("subscribe: no id in the answer")
	}
	f.mu.Lock()
	if u.unsid == "" {
		u.unsid = id
	}
	f.mu.Unlock()
	return sub, nil
}

// subscribeLive gives every user a live subscription to send through.
func (f *fixture) subscribeLive(ctx context.Context) error {
	return parallel(ctx, len(f.users), 16, func(i int) error {
		_, err := f.subscribe(ctx, i, map[string]any{"type": "live"})
		return err
	})
}

// liveFixture starts the scenarios whose users read live streams: a fixture
// with the options' users signed in, each subscribed live. The caller
// defers f.cleanup.
func liveFixture(ctx context.Context, e *env, prog *progress) (*fixture, error) {
	f, err := newFixture(ctx, e)
	if err != nil {
		return nil, err
	}
	if err := f.addUsers(ctx, e.o.Users, prog); err != nil {
		f.cleanup()
		return nil, err
	}
	if err := f.subscribeLive(ctx); err != nil {
		f.cleanup()
		return nil, err
	}
	return f, nil
}

// cleanup deletes what the fixture made on a server the bench did not
// start; the bench's own nodes go with their directory.
func (f *fixture) cleanup() {
	if f.e.self {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	parallel(ctx, len(f.users), 8, func(i int) error {
		if u := f.users[i]; u != nil {
			return f.e.admin.DeleteUser(ctx, u.id)
		}
		return nil
	})
	f.e.admin.Do(ctx, http.MethodDelete, "/v1.0/applications/"+f.appID, nil, nil)
}

// sendCall is a POST of notification seq to user u as the application.
// rawContent carries seq and the send time, which receivers match.
func (f *fixture) sendCall(u *benchUser, seq int64, sent time.Time) call {
	body := fmt.Appendf(nil, `{"appNotificationId":"bench-%d","payload":{"rawContent":"b:%d:%d","visualContent":{"title":"Build %d finished","body":"All 1432 tests passed."}}}`,
		seq, seq, sent.UnixNano(), seq)
	return call{method: http.MethodPost, path: "/v1.0/me/notifications", body: body, header: http.Header{
		"Authorization": {"Bearer " + f.appToken}, "X-Uns-Id": {u.unsid}, "Content-Type": {"application/json"}}}
}

// parallel runs fn(0..n-1) on k goroutines and returns the first error.
func parallel(ctx context.Context, n, k int, fn func(i int) error) error {
	var next atomic.Int64
	var first error
	var once sync.Once
	var wg sync.WaitGroup
	for range min(k, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first == nil {
		first = ctx.Err()
	}
	return first
}

// parseMark reads the "b:<seq>:<unixnano>" mark from an event's data.
func parseMark(data []byte) (seq int64, sent int64, ok bool) {
	const key = `"rawContent":"b:`
	i := bytes.Index(data, []byte(key))
	if i < 0 {
		return 0, 0, false
	}
	rest := data[i+len(key):]
	j := bytes.IndexByte(rest, ':')
	if j < 0 {
		return 0, 0, false
	}
	seq, err := strconv.ParseInt(string(rest[:j]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	rest = rest[j+1:]
	k := bytes.IndexByte(rest, '"')
	if k < 0 {
		return 0, 0, false
	}
	sent, err = strconv.ParseInt(string(rest[:k]), 10, 64)
	return seq, sent, err == nil
}
