package fcm

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/fanout/fcm/fcmtest"
	"github.com/herald-notify/herald/resource"
)

func newFake(t testing.TB) *fcmtest.Server { return fcmtest.New(t, fcmtest.Options{}) }

func newSender(t testing.TB, f *fcmtest.Server, now func() time.Time) *Sender {
	s, err := New(Options{ServiceAccountJSON: f.ServiceAccountJSON(), Endpoint: f.URL, Client: f.Client(), Now: now})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func lastSend(t testing.TB, f *fcmtest.Server) fcmtest.Send {
	t.Helper()
	all := f.Sends("")
	if len(all) == 0 {
		t.Fatal("no send reached the fake")
	}
	return all[len(all)-1]
}

func fcmSub(token string) *resource.SubscriptionRecord {
	return &resource.SubscriptionRecord{Subscription: resource.Subscription{
		ID: "sub-a", PlatformType: resource.PlatformAndroid, Status: resource.SubActive,
		Channel: resource.Channel{Type: resource.ChannelFCM, Token: token},
	}}
}

func visual(now time.Time) *fanout.Message {
	return &fanout.Message{
		Type: resource.ChangeCreated, DeliveryID: "d-1",
		Notification: resource.Notification{
			ID: "n-1", AppNotificationID: "task-42", GroupName: "tasks",
			Payload:  resource.Payload{VisualContent: &resource.VisualContent{Title: "Review due", Body: "Today"}},
			Priority: resource.PriorityHigh, ExpirationDateTime: resource.At(now.Add(time.Hour)),
			ReadState: resource.ReadUnread, UserActionState: resource.ActionNone, Status: resource.StatusActive,
		},
	}
}

func TestVisualNotificationReachesFCM(t *testing.T) {
	f := newFake(t)
	now := time.Now().Truncate(time.Second) // whole seconds, as stored times are whole milliseconds
	s := newSender(t, f, func() time.Time { return now })
	res := s.Send(context.Background(), fcmSub("device-1"), visual(now))
	if res.Outcome != fanout.Delivered || res.Err != "" {
		t.Fatalf("result %+v", res)
	}
	m := lastSend(t, f).Message
	if m.Token != "device-1" || m.Notification == nil || m.Notification.Title != "Review due" || m.Notification.Body != "Today" {
		t.Errorf("message %+v", m)
	}
	if m.Android.Priority != "high" || m.Android.TTL != "3600s" {
		t.Errorf("android %+v, want high and 3600s", m.Android)
	}
	for k, want := range map[string]string{"type": "created", "id": "n-1", "appNotificationId": "task-42", "groupName": "tasks"} {
		if m.Data[k] != want {
			t.Errorf("data[%s] = %q, want %q", k, m.Data[k], want)
		}
	}
}

func TestDismissAndDeleteAreSilentDataMessages(t *testing.T) {
	f := newFake(t)
	now := time.Now().Truncate(time.Second)
	s := newSender(t, f, func() time.Time { return now })

	dismissed := visual(now)
	dismissed.Type = resource.ChangeUpdated
	dismissed.Notification.UserActionState = resource.ActionDismissed
	deleted := &fanout.Message{Type: resource.ChangeDeleted, Reason: "deleted", Notification: resource.Notification{ID: "n-1"}, DeliveryID: "d-2"}
	raw := `{"sync":true}`
	rawOnly := visual(now)
	rawOnly.Notification.Payload = resource.Payload{RawContent: &raw}
	rawOnly.Notification.Priority = resource.PriorityNone

	for name, tc := range map[string]struct {
		msg  *fanout.Message
		data map[string]string
		ttl  string
	}{
		"dismissed": {dismissed, map[string]string{"type": "updated", "id": "n-1", "userActionState": "dismissed"}, "3600s"},
		"deleted":   {deleted, map[string]string{"type": "deleted", "id": "n-1", "reason": "deleted"}, ""},
		"raw":       {rawOnly, map[string]string{"type": "created", "rawContent": raw}, "3600s"},
	} {
		if res := s.Send(context.Background(), fcmSub("device-1"), tc.msg); res.Outcome != fanout.Delivered {
			t.Fatalf("%s: %+v", name, res)
		}
		m := lastSend(t, f).Message
		if m.Notification != nil || m.Android.Priority != "normal" || m.Android.TTL != tc.ttl {
			t.Errorf("%s: notification %+v android %+v, want silent, normal, ttl %q", name, m.Notification, m.Android, tc.ttl)
		}
		for k, want := range tc.data {
			if m.Data[k] != want {
				t.Errorf("%s: data[%s] = %q, want %q", name, k, m.Data[k], want)
			}
		}
	}
}

func TestFCMErrorsLeadToOutcomes(t *testing.T) {
	f := newFake(t)
	f.Script("unregistered", fcmtest.Error(404, "NOT_FOUND", "UNREGISTERED", "Requested entity was not found."))
	f.Script("bare404", func(w http.ResponseWriter) { w.WriteHeader(404) })
	f.Script("notfound400", fcmtest.Error(400, "NOT_FOUND", "", "gone")) // status word decides
	f.Script("invalid", fcmtest.Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Message is too big"))
	f.Script("mismatch", fcmtest.Error(403, "PERMISSION_DENIED", "SENDER_ID_MISMATCH", "SenderId mismatch"))
	// FCM's answer to a token that is not one, as it comes, and with the
	// field named in a BadRequest detail instead of the message.
	f.Script("notatoken", fcmtest.Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "The registration token is not a valid FCM registration token"))
	f.Script("tokenfield", func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT","details":[`+
			`{"@type":"type.googleapis.com/google.firebase.fcm.v1.FcmError","errorCode":"INVALID_ARGUMENT"},`+
			`{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.token","description":"Invalid registration token"}]}]}}`)
	})
	f.Script("datafield", func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"code":400,"message":"Request contains an invalid argument.","status":"INVALID_ARGUMENT","details":[`+
			`{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].key","description":"Invalid data key: from"}]}]}}`)
	})
	// A message at fault whose words quote a value about tokens: the
	// field named is not the token.
	f.Script("quoted", func(w http.ResponseWriter) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		io.WriteString(w, `{"error":{"code":400,"message":"Invalid value at 'message.data[0].value' (TYPE_STRING), the registration token is not a valid FCM registration token","status":"INVALID_ARGUMENT","details":[`+
			`{"@type":"type.googleapis.com/google.rpc.BadRequest","fieldViolations":[{"field":"message.data[0].value","description":"Invalid value"}]}]}}`)
	})
	f.Script("quotedbare", fcmtest.Error(400, "INVALID_ARGUMENT", "INVALID_ARGUMENT", "Invalid value at 'message.data[0].value': The registration token is not a valid FCM registration token"))
	f.Script("denied", fcmtest.Error(403, "PERMISSION_DENIED", "", "Permission 'cloudmessaging.messages.create' denied"))
	f.Script("quota", func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "30")
		fcmtest.Error(429, "RESOURCE_EXHAUSTED", "QUOTA_EXCEEDED", "Quota exceeded.")(w)
	})
	f.Script("unavailable", func(w http.ResponseWriter) {
		w.Header().Set("Retry-After", "5")
		fcmtest.Error(503, "UNAVAILABLE", "UNAVAILABLE", "The service is currently unavailable.")(w)
	})
	f.Script("internal", func(w http.ResponseWriter) { w.WriteHeader(500); io.WriteString(w, "<html>oops</html>") })
	f.Script("redirect", func(w http.ResponseWriter) { w.Header().Set("Location", "/x"); w.WriteHeader(302) })
	f.Script("garbage", func(w http.ResponseWriter) { w.WriteHeader(418); io.WriteString(w, "\x00\xff not json") })

	s := newSender(t, f, nil)
	for _, tc := range []struct {
		token string
		want  fanout.Outcome
		retry time.Duration
		words string
	}{
		{"unregistered", fanout.Disable, 0, "UNREGISTERED"},
		{"bare404", fanout.Failed, 0, "404"},
		{"notfound400", fanout.Failed, 0, "NOT_FOUND"},
		{"invalid", fanout.Failed, 0, "INVALID_ARGUMENT: Message is too big"},
		{"mismatch", fanout.Failed, 0, "SENDER_ID_MISMATCH"},
		{"notatoken", fanout.Disable, 0, "INVALID_ARGUMENT: The registration token is not a valid FCM registration token"},
		{"tokenfield", fanout.Disable, 0, "INVALID_ARGUMENT"},
		{"datafield", fanout.Failed, 0, "INVALID_ARGUMENT"},
		{"quoted", fanout.Failed, 0, "INVALID_ARGUMENT"},
		{"quotedbare", fanout.Failed, 0, "INVALID_ARGUMENT"},
		{"denied", fanout.Retry, 0, "PERMISSION_DENIED"},
		{"quota", fanout.Retry, 30 * time.Second, "QUOTA_EXCEEDED"},
		{"unavailable", fanout.Retry, 5 * time.Second, "UNAVAILABLE"},
		{"internal", fanout.Retry, 0, "500"},
		{"redirect", fanout.Retry, 0, "redirects are not followed"},
		{"garbage", fanout.Failed, 0, "418"},
	} {
		res := s.Send(context.Background(), fcmSub(tc.token), visual(time.Now()))
		if res.Outcome != tc.want || res.RetryAfter != tc.retry || !strings.Contains(res.Err, tc.words) {
			t.Errorf("%s: %+v, want %v after %v with %q", tc.token, res, tc.want, tc.retry, tc.words)
		}
	}
	if fetches, _ := f.Counts(); fetches != 1 {
		t.Errorf("%d token fetches for one sender, want 1 (cached)", fetches)
	}
}

func TestAccessTokenIsCachedUntilNearExpiry(t *testing.T) {
	f := newFake(t)
	var mu sync.Mutex
	// The clock starts in the past so that, advanced by 56 minutes, the
	// JWTs it stamps are still not "issued in the future" for the fake.
	now := time.Now().Add(-57 * time.Minute)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	s := newSender(t, f, clock)

	for i := 0; i < 3; i++ {
		if res := s.Send(context.Background(), fcmSub("d"), visual(clock())); res.Outcome != fanout.Delivered {
			t.Fatal(res)
		}
	}
	if fetches, _ := f.Counts(); fetches != 1 {
		t.Fatalf("%d fetches, want 1", fetches)
	}
	advance(50 * time.Minute) // within the hour, before the 5-minute margin
	if res := s.Send(context.Background(), fcmSub("d"), visual(clock())); res.Outcome != fanout.Delivered {
		t.Fatal(res)
	}
	if fetches, _ := f.Counts(); fetches != 1 {
		t.Fatalf("%d fetches at 50 min, want 1", fetches)
	}
	advance(6 * time.Minute) // 56 min: inside the margin
	if res := s.Send(context.Background(), fcmSub("d"), visual(clock())); res.Outcome != fanout.Delivered {
		t.Fatal(res)
	}
	if fetches, _ := f.Counts(); fetches != 2 {
		t.Fatalf("%d fetches at 56 min, want 2", fetches)
	}
}

func TestConcurrentSendsShareOneTokenFetch(t *testing.T) {
	f := newFake(t)
	const n = 16
	arrived, release := make(chan struct{}, n), make(chan struct{})
	f.OnToken(func() { arrived <- struct{}{}; <-release })
	s := newSender(t, f, nil)
	var started, done sync.WaitGroup
	var delivered atomic.Int32
	for i := 0; i < n; i++ {
		started.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			started.Done()
			if s.Send(context.Background(), fcmSub("d"), visual(time.Now())).Outcome == fanout.Delivered {
				delivered.Add(1)
			}
		}()
	}
	started.Wait()
	<-arrived // one exchange is in flight and held; every sender has started
	close(release)
	done.Wait()
	if fetches, sends := f.Counts(); fetches != 1 || sends != n || delivered.Load() != n || len(arrived) != 0 {
		t.Fatalf("fetches %d (requests %d) sends %d delivered %d, want 1, %d, %d", fetches, 1+len(arrived), sends, delivered.Load(), n, n)
	}
}

func TestUnauthorizedRefreshesTokenOnce(t *testing.T) {
	f := newFake(t)
	s := newSender(t, f, nil)
	if res := s.Send(context.Background(), fcmSub("d"), visual(time.Now())); res.Outcome != fanout.Delivered {
		t.Fatal(res)
	}
	f.RevokeTokens() // Google stops taking the cached token
	if res := s.Send(context.Background(), fcmSub("d"), visual(time.Now())); res.Outcome != fanout.Delivered {
		t.Fatalf("after revocation: %+v, want delivered with a fresh token", res)
	}
	if fetches, sends := f.Counts(); fetches != 2 || sends != 2 {
		t.Fatalf("fetches %d sends %d, want 2 and 2", fetches, sends)
	}

	// A token endpoint that keeps refusing (a deleted key): retry, and
	// never disable the device's subscription for our credentials.
	f.RevokeTokens()
	f.FailTokenRequests(1)
	res := s.Send(context.Background(), fcmSub("d"), visual(time.Now()))
	if res.Outcome != fanout.Retry || !strings.Contains(res.Err, "invalid_grant") {
		t.Fatalf("refused refresh: %+v", res)
	}
}

func TestPersistent401IsRetried(t *testing.T) {
	f := newFake(t)
	f.Script("d", fcmtest.Error(401, "UNAUTHENTICATED", "", "no"))
	s := newSender(t, f, nil)
	res := s.Send(context.Background(), fcmSub("d"), visual(time.Now()))
	if res.Outcome != fanout.Retry || !strings.Contains(res.Err, "401") {
		t.Fatalf("%+v", res)
	}
	if fetches, sends := f.Counts(); fetches != 2 || sends != 2 {
		t.Fatalf("fetches %d sends %d, want one refresh and one resend", fetches, sends)
	}
}

func TestHangingFCMTimesOut(t *testing.T) {
	f := newFake(t)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	f.Script("slow", func(w http.ResponseWriter) { <-release })
	s, err := New(Options{ServiceAccountJSON: f.ServiceAccountJSON(), Endpoint: f.URL, Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res := s.Send(context.Background(), fcmSub("slow"), visual(time.Now())); res.Outcome != fanout.Retry || !strings.Contains(res.Err, "timed out") {
		t.Fatalf("%+v", res)
	}
}

func TestNewRejectsBadKeys(t *testing.T) {
	f := newFake(t)
	good := map[string]string{}
	json.Unmarshal(f.ServiceAccountJSON(), &good)
	with := func(k, v string) []byte {
		m := map[string]string{}
		for a, b := range good {
			m[a] = b
		}
		if v == "" {
			delete(m, k)
		} else {
			m[k] = v
		}
		b, _ := json.Marshal(m)
		return b
	}
	small, _ := rsa.GenerateKey(rand.Reader, 1024)
	smallDER, _ := x509.MarshalPKCS8PrivateKey(small)
	for _, tc := range []struct {
		name string
		json []byte
		want string
	}{
		{"empty", nil, "required"},
		{"not json", []byte("{"), "not valid JSON"},
		{"wrong type", with("type", "authorized_user"), "service_account"},
		{"no project", with("project_id", ""), "project_id"},
		{"no email", with("client_email", ""), "client_email"},
		{"no key", with("private_key", ""), "private_key"},
		{"not pem", with("private_key", "MIIE..."), "PEM"},
		{"small key", with("private_key", string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: smallDER}))), "2048"},
		{"bad token uri", with("token_uri", "::"), "token URL"},
	} {
		_, err := New(Options{ServiceAccountJSON: tc.json})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error about %q", tc.name, err, tc.want)
		}
	}
	if _, err := New(Options{ServiceAccountJSON: with("token_uri", "")}); err != nil {
		t.Errorf("a key without token_uri uses Google's: %v", err)
	}
}

func BenchmarkSend(b *testing.B) {
	f := newFake(b)
	s := newSender(b, f, nil)
	sub := fcmSub("device-1")
	msg := visual(time.Now())
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if res := s.Send(context.Background(), sub, msg); res.Outcome != fanout.Delivered {
				b.Fatal(res)
			}
		}
	})
}

func TestOversizedContentIsTruncatedToFit(t *testing.T) {
	big := strings.Repeat("x", 4000)
	msg := &fanout.Message{Type: resource.ChangeCreated, DeliveryID: "msg_1", Notification: resource.Notification{
		ID: "n1", Payload: resource.Payload{RawContent: &big, VisualContent: &resource.VisualContent{Title: "T", Body: "B"}},
		Priority: resource.PriorityHigh, ExpirationDateTime: resource.At(time.Now().Add(time.Hour))}}
	for _, ios := range []bool{false, true} {
		b, err := Body("token", ios, msg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if len(b) > 4096 || strings.Contains(string(b), big) || !strings.Contains(string(b), `"truncated":"true"`) {
			t.Fatalf("ios %v: body of %d bytes is not the truncated form", ios, len(b))
		}
	}
}

// A title may hold nearly all of the API's 4096 bytes of payload, and one
// of characters that JSON escapes (&, <, >) grows sixfold when encoded:
// dropping the raw content and the body is then not enough, and FCM
// refuses a message over 4 KiB. The title is cut to fit.
func TestOversizedTitleIsCutToFit(t *testing.T) {
	for name, title := range map[string]string{
		"long":    strings.Repeat("é", 2000),
		"escaped": strings.Repeat("&", 1000),
	} {
		msg := &fanout.Message{Type: resource.ChangeCreated, DeliveryID: "msg_1", Notification: resource.Notification{
			ID: "n1", Payload: resource.Payload{VisualContent: &resource.VisualContent{Title: title, Body: "B"}},
			ExpirationDateTime: resource.At(time.Now().Add(time.Hour))}}
		for _, ios := range []bool{false, true} {
			b, err := Body("token", ios, msg, time.Now())
			if err != nil || len(b) > 4096 || !strings.Contains(string(b), `"truncated":"true"`) {
				t.Errorf("%s title, ios %v: body of %d bytes, %v", name, ios, len(b), err)
			}
		}
	}
}

// Android shows an FCM notification message itself while the app is in
// the background, so the app cannot drop a repeat by id: the message must
// carry the tag that makes the tray replace what it shows. Without one, a
// replace (same appNotificationId, new content) and a retried send that FCM
// had taken both showed a second notification, where iOS (collapse id) and
// browsers (the worker's tag) show one.
func TestAlertsReplaceByNotificationTag(t *testing.T) {
	f := newFake(t)
	now := time.Now().Truncate(time.Second)
	s := newSender(t, f, func() time.Time { return now })
	created := visual(now)
	replaced := visual(now)
	replaced.Type, replaced.DeliveryID = resource.ChangeUpdated, "d-2"
	replaced.Notification.Payload.VisualContent = &resource.VisualContent{Title: "Review moved", Body: "Tomorrow"}
	for name, msg := range map[string]*fanout.Message{"created": created, "retried": created, "replaced": replaced} {
		if res := s.Send(context.Background(), fcmSub("device-1"), msg); res.Outcome != fanout.Delivered {
			t.Fatalf("%s: %+v", name, res)
		}
		a := lastSend(t, f).Message.Android
		if a.Notification == nil || a.Notification.Tag != "n-1" {
			t.Errorf("%s: android %+v, want the notification's id as its tag", name, a)
		}
	}
}

// A title that JSON escapes heavily (&, <, > take six bytes each) is cut
// by what its characters take in the push, not by its own bytes: cutting
// the push's excess in title bytes left such a title as a lone "…" where
// hundreds of its characters fit.
func TestEscapedTitleIsCutNoShorterThanNeeded(t *testing.T) {
	title := strings.Repeat("&", 1000)
	msg := &fanout.Message{Type: resource.ChangeCreated, DeliveryID: "msg_1", Notification: resource.Notification{
		ID: "n1", Payload: resource.Payload{VisualContent: &resource.VisualContent{Title: title}},
		ExpirationDateTime: resource.At(time.Now().Add(time.Hour))}}
	for _, ios := range []bool{false, true} {
		b, err := Body("token", ios, msg, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		var req struct {
			Message struct {
				Notification struct{ Title string }
			}
		}
		if err := json.Unmarshal(b, &req); err != nil {
			t.Fatal(err)
		}
		// An iOS token's message holds the title twice (the aps alert's
		// too), so one character less takes twice the room.
		slack := 6 + len("…")
		if ios {
			slack *= 2
		}
		got := req.Message.Notification.Title
		if len(b) > 4096 || !strings.HasSuffix(got, "…") || len(b) < 4096-slack {
			t.Fatalf("ios %v: body of %d bytes with a title of %d bytes (%.20q...): want the longest cut that fits 4096", ios, len(b), len(got), got)
		}
	}
}
