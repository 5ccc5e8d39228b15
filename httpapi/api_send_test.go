package httpapi_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/node"
)

// sendEnv is a node with two applications, two users, and a live web
// subscription of each user to each application.
type sendEnv struct {
	*hnode
	tasks, mail          app
	alice, bob           user
	aliceTasks, bobTasks string // UNSIDs to tasks.contoso.com
	aliceMail            string // alice's UNSID to mail.contoso.com
}

func newSendEnv(t *testing.T, configure func(*node.Config)) *sendEnv {
	t.Helper()
	n := start(t, configure)
	e := &sendEnv{hnode: n, tasks: n.newApp(t, "tasks.contoso.com"), mail: n.newApp(t, "mail.contoso.com"),
		alice: n.newUser(t, "alice"), bob: n.newUser(t, "bob")}
	e.aliceTasks = n.subscribe(t, e.alice, e.tasks.Host)
	e.bobTasks = n.subscribe(t, e.bob, e.tasks.Host)
	e.aliceMail = n.subscribe(t, e.alice, e.mail.Host)
	return e
}

const feedAny = "/v1.0/me/notifications?status=any"

func TestSendNeedsAnActiveUNSIDOfTheCallingApplication(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	before := e.snapshot(t, e.alice.Token, feedAny)

	wantInvalid(t, e.post(t, e.tasks.Token, "/v1.0/me/notifications", visual("no header")), "X-UNS-ID")
	for name, unsid := range map[string]string{"unknown": "bm90LWEtcmVhbC11bnNpZA", "another application's": e.aliceMail} {
		t.Run(name, func(t *testing.T) {
			wantError(t, e.send(t, e.tasks, unsid, visual("x")), http.StatusForbidden, "accessDenied")
		})
	}
	// Users, even admins, do not send through /me/notifications.
	wantError(t, e.post(t, e.alice.Token, "/v1.0/me/notifications", visual("x"), "X-UNS-ID", e.aliceTasks), http.StatusForbidden, "accessDenied")
	wantError(t, e.post(t, e.admin, "/v1.0/me/notifications", visual("x"), "X-UNS-ID", e.aliceTasks), http.StatusForbidden, "accessDenied")
	// The app-side reads and deletes need the header too.
	wantInvalid(t, e.get(t, e.tasks.Token, "/v1.0/me/notifications"), "X-UNS-ID")
	wantError(t, e.get(t, e.tasks.Token, "/v1.0/me/notifications", "X-UNS-ID", e.aliceMail), http.StatusForbidden, "accessDenied")
	wantInvalid(t, e.del(t, e.tasks.Token, "/v1.0/me/notifications?groupName=g"), "X-UNS-ID")

	sameSnapshot(t, "alice's feed", before, e.snapshot(t, e.alice.Token, feedAny))
	if len(e.get(t, e.alice.Token, feedAny).expect(t, 200).value(t)) != 0 {
		t.Errorf("a refused send stored a notification")
	}
}

func TestSendAcceptsGraphDocumentationExamples(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	exp := time.Now().Add(48 * time.Hour).UTC().Truncate(time.Millisecond)
	// The bodies of Microsoft Graph's "Create and send a notification"
	// page, with its PascalCase property names and string TTLs.
	examples := []struct {
		name string
		body string
		want map[string]any
	}{
		{"raw", `{
			"targetHostName": "tasks.contoso.com",
			"appNotificationId": "sampleRawNotification",
			"payload": {"rawContent": "Hello World!"},
			"targetPolicy": {"platformTypes": ["windows", "ios", "android"]},
			"priority": "High",
			"displayTimeToLive": "60"
		}`, map[string]any{"appNotificationId": "sampleRawNotification", "priority": "High", "displayTimeToLive": 60.0}},
		{"visual PascalCase", `{
			"TargetHostName": "tasks.contoso.com",
			"AppNotificationId": "sampleDirectedNotification",
			"GroupName": "TestGroup",
			"ExpirationDateTime": "` + exp.Format(time.RFC3339Nano) + `",
			"Priority": "High",
			"DisplayTimeToLive": "60",
			"Payload": {"VisualContent": {"Title": "Hello World!", "Body": "Notifications Test!"}},
			"TargetPolicy": {"PlatformTypes": ["windows", "ios", "android", "webPush"]}
		}`, map[string]any{"appNotificationId": "sampleDirectedNotification", "groupName": "TestGroup", "priority": "High",
			"displayTimeToLive": 60.0, "expirationDateTime": exp.Format("2006-01-02T15:04:05.000Z")}},
		{"fallback", `{
			"targetHostName": "tasks.contoso.com",
			"appNotificationId": "sampleFallbackNotification",
			"payload": {"rawContent": "Hello iOS"},
			"targetPolicy": {"platformTypes": ["iOS"]},
			"priority": "High",
			"fallbackPolicy": {"endpointFallback": {"platformTypes": "iOS", "fallbackDelayInSeconds": 60,
				"visualContent": {"title": "New message", "body": "Open the app to read it"}}}
		}`, map[string]any{"appNotificationId": "sampleFallbackNotification", "priority": "High"}},
	}
	for _, ex := range examples {
		t.Run(ex.name, func(t *testing.T) {
			r := e.send(t, e.tasks, e.aliceTasks, ex.body).expect(t, http.StatusCreated)
			m := r.obj(t)
			id := str(m, "id")
			if id == "" || r.Header.Get("Location") != "/v1.0/me/notifications/"+id {
				t.Errorf("id %q, Location %q", id, r.Header.Get("Location"))
			}
			for k, v := range ex.want {
				if m[k] != v {
					t.Errorf("%s = %v, want %v", k, m[k], v)
				}
			}
			if m["targetHostName"] != "tasks.contoso.com" || m["readState"] != "unread" || m["userActionState"] != "noInteraction" ||
				m["status"] != "active" {
				t.Errorf("stored notification %v", m)
			}
			for _, k := range []string{"createdDateTime", "lastModifiedDateTime", "expirationDateTime"} {
				if !wireTime.MatchString(str(m, k)) {
					t.Errorf("%s %v is not RFC 3339 UTC with milliseconds", k, m[k])
				}
			}
			got := e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusOK).obj(t)
			if string(mustJSON(got)) != string(mustJSON(m)) {
				t.Errorf("the feed's copy %v differs from the 201's %v", got, m)
			}
		})
	}
	vis := e.get(t, e.alice.Token, "/v1.0/me/notifications?groupName=TestGroup").expect(t, 200).value(t)
	if len(vis) != 1 || str(vis[0]["payload"].(map[string]any)["visualContent"].(map[string]any), "title") != "Hello World!" {
		t.Errorf("PascalCase payload not stored as visualContent.title: %v", vis)
	}
}

func TestSendValidatesEveryPropertyAndStoresNothingOnRejection(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	before := e.snapshot(t, e.alice.Token, feedAny)
	now := time.Now().UTC()
	long := strings.Repeat("n", 257)
	fb := func(kv ...any) map[string]any {
		ef := map[string]any{"platformTypes": []string{"iOS"}, "fallbackDelayInSeconds": 60,
			"visualContent": map[string]any{"title": "fallback"}}
		for i := 0; i+1 < len(kv); i += 2 {
			ef[kv[i].(string)] = kv[i+1]
		}
		return map[string]any{"endpointFallback": ef}
	}
	raw := func(n int) map[string]any { return map[string]any{"rawContent": strings.Repeat("a", n)} }
	cases := []struct {
		name   string
		body   any
		status int
		target string
	}{
		{"other application's host", visual("x", "targetHostName", "mail.contoso.com"), 400, "targetHostName"},
		{"appNotificationId too long", visual("x", "appNotificationId", long), 400, "appNotificationId"},
		{"groupName too long", visual("x", "groupName", long), 400, "groupName"},
		{"no payload", map[string]any{"groupName": "g"}, 400, "payload"},
		{"empty payload", map[string]any{"payload": map[string]any{}}, 400, "payload"},
		{"visualContent without title", map[string]any{"payload": map[string]any{"visualContent": map[string]any{"body": "b"}}}, 400, "payload.visualContent.title"},
		{"rawContent not a string", map[string]any{"payload": map[string]any{"rawContent": map[string]any{"a": 1}}}, 400, "payload.rawContent"},
		{"payload over 4096 bytes", map[string]any{"payload": raw(4080)}, 413, "payload"},
		{"unknown platform in targetPolicy", visual("x", "targetPolicy", map[string]any{"platformTypes": []string{"blackberry"}}), 400, "targetPolicy.platformTypes"},
		{"unknown priority", visual("x", "priority", "Urgent"), 400, "priority"},
		{"negative displayTimeToLive", visual("x", "displayTimeToLive", -1), 400, "displayTimeToLive"},
		{"displayTimeToLive over 30 days", visual("x", "displayTimeToLive", 2592001), 400, "displayTimeToLive"},
		{"displayTimeToLive with a space", visual("x", "displayTimeToLive", " 60"), 400, "displayTimeToLive"},
		{"displayTimeToLive with a sign", visual("x", "displayTimeToLive", "+60"), 400, "displayTimeToLive"},
		{"displayTimeToLive not numeric", visual("x", "displayTimeToLive", "soon"), 400, "displayTimeToLive"},
		{"displayTimeToLive fractional", visual("x", "displayTimeToLive", 1.5), 400, "displayTimeToLive"},
		{"expirationDateTime past", visual("x", "expirationDateTime", now.Add(-time.Minute).Format(time.RFC3339)), 400, "expirationDateTime"},
		{"expirationDateTime beyond 30 days", visual("x", "expirationDateTime", now.Add(30*24*time.Hour+time.Hour).Format(time.RFC3339)), 400, "expirationDateTime"},
		{"expirationDateTime not a time", visual("x", "expirationDateTime", "next week"), 400, "expirationDateTime"},
		{"fallback for android", visual("x", "fallbackPolicy", fb("platformTypes", []string{"android"})), 400, "fallbackPolicy.endpointFallback.platformTypes"},
		{"fallback for two platforms", visual("x", "fallbackPolicy", fb("platformTypes", []string{"iOS", "iOS"})), 400, "fallbackPolicy.endpointFallback.platformTypes"},
		{"fallback delay under 60", visual("x", "fallbackPolicy", fb("fallbackDelayInSeconds", 59)), 400, "fallbackPolicy.endpointFallback.fallbackDelayInSeconds"},
		{"fallback delay over 600", visual("x", "fallbackPolicy", fb("fallbackDelayInSeconds", 601)), 400, "fallbackPolicy.endpointFallback.fallbackDelayInSeconds"},
		{"fallback without title", visual("x", "fallbackPolicy", fb("visualContent", map[string]any{"body": "b"})), 400, "fallbackPolicy.endpointFallback.visualContent.title"},
		{"fallback without endpointFallback", visual("x", "fallbackPolicy", map[string]any{}), 400, "fallbackPolicy.endpointFallback"},
		{"fallback without iOS in targetPolicy", visual("x", "fallbackPolicy", fb(), "targetPolicy", map[string]any{"platformTypes": []string{"windows"}}), 400, "fallbackPolicy"},
		{"unknown property", visual("x", "importance", "high"), 400, "importance"},
		{"unknown nested property", map[string]any{"payload": map[string]any{"visualContent": map[string]any{"title": "t", "subtitle": "s"}}},
			400, "payload.visualContent.subtitle"},
		{"unknown nested property in PascalCase", `{"Payload": {"VisualContent": {"Title": "t", "Subtitle": "s"}}}`,
			400, "payload.visualContent.Subtitle"},
		{"unknown property in fallbackPolicy", visual("x", "fallbackPolicy", fb("retries", 3)), 400, "fallbackPolicy.endpointFallback.retries"},
		{"read-only property", visual("x", "readState", "read"), 400, "readState"},
		{"array body", []any{visual("one"), visual("two")}, 400, ""},
		{"malformed JSON", `{"payload": {"rawContent": "x"}`, 400, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.send(t, e.tasks, e.aliceTasks, c.body)
			if c.status == 413 {
				if er := wantError(t, r, 413, "payloadTooLarge"); er.target() != c.target {
					t.Errorf("413 target %q", er.target())
				}
				return
			}
			er := wantInvalid(t, r, c.target)
			if c.name == "array body" && !strings.Contains(er.Message, "multiple notifications is not supported") {
				t.Errorf("array body message %q", er.Message)
			}
		})
	}
	sameSnapshot(t, "alice's feed", before, e.snapshot(t, e.alice.Token, feedAny))

	// The accepted edges of the same rules.
	ok := []struct {
		name  string
		body  map[string]any
		check func(t *testing.T, m map[string]any)
	}{
		{"payload of exactly 4096 bytes", map[string]any{"payload": raw(4079)}, nil},
		{"names of 256 characters", visual("x", "appNotificationId", long[:256], "groupName", long[:256]), nil},
		{"displayTimeToLive 0", visual("x", "displayTimeToLive", 0), func(t *testing.T, m map[string]any) {
			if m["displayTimeToLive"] != 0.0 {
				t.Errorf("displayTimeToLive %v", m["displayTimeToLive"])
			}
		}},
		{"displayTimeToLive 2592000 as a string", visual("x", "displayTimeToLive", "2592000"), func(t *testing.T, m map[string]any) {
			if m["displayTimeToLive"] != 2592000.0 {
				t.Errorf("displayTimeToLive %v", m["displayTimeToLive"])
			}
		}},
		{"priority in lower case", visual("x", "priority", "low"), func(t *testing.T, m map[string]any) {
			if m["priority"] != "Low" {
				t.Errorf("priority %v, want Low", m["priority"])
			}
		}},
		{"default priority with visualContent", visual("x"), func(t *testing.T, m map[string]any) {
			if m["priority"] != "High" {
				t.Errorf("priority %v, want High", m["priority"])
			}
		}},
		{"default priority and expiry of rawContent", map[string]any{"payload": map[string]any{"rawContent": "r"}}, func(t *testing.T, m map[string]any) {
			if m["priority"] != "None" {
				t.Errorf("priority %v, want None", m["priority"])
			}
			exp, _ := time.Parse(time.RFC3339, str(m, "expirationDateTime"))
			if d := exp.Sub(now); d < 7*24*time.Hour-time.Minute || d > 7*24*time.Hour+time.Minute {
				t.Errorf("default expirationDateTime %v, want now + 7 days", m["expirationDateTime"])
			}
		}},
		{"expirationDateTime just inside 30 days", visual("x", "expirationDateTime", now.Add(30*24*time.Hour-time.Minute).Format(time.RFC3339)), nil},
		{"targetPolicy spellings", visual("x", "targetPolicy", map[string]any{"platformTypes": []string{"WebPush", "web", "IOS", "Windows"}}),
			func(t *testing.T, m map[string]any) {
				got := toStrings(m["targetPolicy"].(map[string]any)["platformTypes"])
				if len(got) != 3 || !slices.Contains(got, "ios") || !slices.Contains(got, "windows") {
					t.Errorf("targetPolicy.platformTypes %v, want three normalised platforms", got)
				}
			}},
		{"fallback with all platforms", visual("x", "fallbackPolicy", fb("platformTypes", "iOS", "fallbackDelayInSeconds", 600)), nil},
		{"own targetHostName", visual("x", "targetHostName", "tasks.contoso.com"), nil},
	}
	for _, c := range ok {
		t.Run(c.name, func(t *testing.T) {
			m := e.send(t, e.tasks, e.aliceTasks, c.body).expect(t, http.StatusCreated).obj(t)
			if c.check != nil {
				c.check(t, m)
			}
		})
	}
}

func TestSendWithTheSameAppNotificationIdReplacesAndKeepsTheId(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	first := e.send(t, e.tasks, e.aliceTasks, visual("v1", "appNotificationId", "task-42", "groupName", "g")).expect(t, http.StatusCreated).obj(t)
	id := str(first, "id")
	e.patch(t, e.alice.Token, "/v1.0/me/notifications/"+id, map[string]any{"readState": "read"}).expect(t, http.StatusOK)

	r := e.send(t, e.tasks, e.aliceTasks, visual("v2", "appNotificationId", "task-42", "groupName", "g")).expect(t, http.StatusOK)
	second := r.obj(t)
	if str(second, "id") != id || r.Header.Get("Location") != "/v1.0/me/notifications/"+id {
		t.Fatalf("replace gave id %v, Location %q; want %s", second["id"], r.Header.Get("Location"), id)
	}
	if second["createdDateTime"] != first["createdDateTime"] || str(second, "lastModifiedDateTime") < str(first, "lastModifiedDateTime") {
		t.Errorf("replace times: first %v, second %v", first, second)
	}
	feed := e.get(t, e.alice.Token, feedAny).expect(t, http.StatusOK).value(t)
	if len(feed) != 1 || str(feed[0], "id") != id {
		t.Fatalf("feed after replace: %v", feed)
	}
	if title := feed[0]["payload"].(map[string]any)["visualContent"].(map[string]any)["title"]; title != "v2" {
		t.Errorf("replaced title %v, want v2", title)
	}

	// Another user, or another application, with the same id is a new notification.
	other := e.sendOK(t, e.tasks, e.bobTasks, visual("bob", "appNotificationId", "task-42"))
	mail := e.sendOK(t, e.mail, e.aliceMail, visual("mail", "appNotificationId", "task-42"))
	if other == id || mail == id || other == mail {
		t.Errorf("ids %s %s %s must differ", id, other, mail)
	}
	if got := len(e.get(t, e.alice.Token, feedAny).expect(t, 200).value(t)); got != 2 {
		t.Errorf("alice has %d notifications, want 2", got)
	}

	// After a delete, the same appNotificationId starts a new notification.
	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusNoContent)
	again := e.send(t, e.tasks, e.aliceTasks, visual("v3", "appNotificationId", "task-42")).expect(t, http.StatusCreated).obj(t)
	if str(again, "id") == id {
		t.Errorf("a send after delete reused the deleted id")
	}
}

func TestApplicationReadsAndDeletesOnlyWhatItSent(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	a1 := e.sendOK(t, e.tasks, e.aliceTasks, visual("a1", "groupName", "g1", "appNotificationId", "n1"))
	a2 := e.sendOK(t, e.tasks, e.aliceTasks, visual("a2", "groupName", "g1", "appNotificationId", "n2"))
	a3 := e.sendOK(t, e.tasks, e.aliceTasks, visual("a3", "groupName", "g2", "appNotificationId", "n3"))
	a4 := e.sendOK(t, e.tasks, e.aliceTasks, visual("a4", "groupName", "g2", "appNotificationId", "n4"))
	m1 := e.sendOK(t, e.mail, e.aliceMail, visual("m1", "groupName", "g1", "appNotificationId", "n1"))
	b1 := e.sendOK(t, e.tasks, e.bobTasks, visual("b1", "groupName", "g1", "appNotificationId", "n1"))
	hdr := []string{"X-UNS-ID", e.aliceTasks}

	list := ids(e.get(t, e.tasks.Token, "/v1.0/me/notifications", hdr...).expect(t, http.StatusOK).value(t))
	if !slices.Equal(list, []string{a4, a3, a2, a1}) {
		t.Errorf("the application's list %v, want %v (its own, alice's, newest first)", list, []string{a4, a3, a2, a1})
	}
	if got := ids(e.get(t, e.tasks.Token, "/v1.0/me/notifications", "X-UNS-ID", e.bobTasks).expect(t, 200).value(t)); !slices.Equal(got, []string{b1}) {
		t.Errorf("the application's list for bob %v, want [%s]", got, b1)
	}
	e.get(t, e.tasks.Token, "/v1.0/me/notifications/"+a1, hdr...).expect(t, http.StatusOK)
	for _, foreign := range []string{m1, b1} {
		wantError(t, e.get(t, e.tasks.Token, "/v1.0/me/notifications/"+foreign, hdr...), http.StatusNotFound, "itemNotFound")
		wantError(t, e.del(t, e.tasks.Token, "/v1.0/me/notifications/"+foreign, hdr...), http.StatusNotFound, "itemNotFound")
	}
	// Applications do not change the user's read state.
	wantError(t, e.patch(t, e.tasks.Token, "/v1.0/me/notifications/"+a1, map[string]any{"readState": "read"}, hdr...), http.StatusForbidden, "accessDenied")

	beforeBad := e.snapshot(t, e.alice.Token, feedAny)
	wantError(t, e.del(t, e.tasks.Token, "/v1.0/me/notifications", hdr...), http.StatusBadRequest, "invalidRequest")
	wantError(t, e.del(t, e.tasks.Token, "/v1.0/me/notifications?groupName=g1&appNotificationId=n1", hdr...), http.StatusBadRequest, "invalidRequest")
	wantError(t, e.del(t, e.alice.Token, "/v1.0/me/notifications?groupName=g1"), http.StatusForbidden, "accessDenied")
	sameSnapshot(t, "alice's feed", beforeBad, e.snapshot(t, e.alice.Token, feedAny))

	e.del(t, e.tasks.Token, "/v1.0/me/notifications/"+a4, hdr...).expect(t, http.StatusNoContent)
	e.del(t, e.tasks.Token, "/v1.0/me/notifications?groupName=g1", hdr...).expect(t, http.StatusNoContent)
	e.del(t, e.tasks.Token, "/v1.0/me/notifications?appNotificationId=n3", hdr...).expect(t, http.StatusNoContent)
	// Deleting what is gone is still 204.
	e.del(t, e.tasks.Token, "/v1.0/me/notifications?appNotificationId=none", hdr...).expect(t, http.StatusNoContent)

	if got := e.get(t, e.tasks.Token, "/v1.0/me/notifications", hdr...).expect(t, 200).value(t); len(got) != 0 {
		t.Errorf("the application still lists %v", ids(got))
	}
	deleted := ids(e.get(t, e.tasks.Token, "/v1.0/me/notifications?status=deleted", hdr...).expect(t, 200).value(t))
	if !slices.Equal(deleted, []string{a4, a3, a2, a1}) {
		t.Errorf("deleted %v, want %v", deleted, []string{a4, a3, a2, a1})
	}
	// The mail application's and bob's notifications of the same group survive.
	if got := ids(e.get(t, e.alice.Token, "/v1.0/me/notifications").expect(t, 200).value(t)); !slices.Equal(got, []string{m1}) {
		t.Errorf("alice's active feed %v, want [%s]", got, m1)
	}
	e.get(t, e.bob.Token, "/v1.0/me/notifications/"+b1).expect(t, http.StatusOK)
	if got := e.get(t, e.bob.Token, "/v1.0/me/notifications/"+b1).obj(t); got["status"] != "active" {
		t.Errorf("bob's notification %v", got)
	}
}

func TestAdminSendsToAnyUser(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	r := e.post(t, e.admin, "/v1.0/users/alice/notifications", visual("from admin", "targetHostName", e.tasks.Host)).expect(t, http.StatusCreated)
	m := r.obj(t)
	// Location is where the admin reads it back: under the user's path.
	if m["targetHostName"] != e.tasks.Host || r.Header.Get("Location") != "/v1.0/users/"+e.alice.ID+"/notifications/"+str(m, "id") {
		t.Errorf("admin send %v, Location %q", m, r.Header.Get("Location"))
	}
	e.get(t, e.admin, r.Header.Get("Location")).expect(t, http.StatusOK)
	e.get(t, e.alice.Token, "/v1.0/me/notifications/"+str(m, "id")).expect(t, http.StatusOK)
	// The sending application sees it as its own.
	e.get(t, e.tasks.Token, "/v1.0/me/notifications/"+str(m, "id"), "X-UNS-ID", e.aliceTasks).expect(t, http.StatusOK)
	e.post(t, e.admin, "/v1.0/users/"+e.bob.ID+"/notifications", visual("by id", "targetHostName", e.tasks.Host)).expect(t, http.StatusCreated)

	before := e.snapshot(t, e.alice.Token, feedAny)
	wantInvalid(t, e.post(t, e.admin, "/v1.0/users/alice/notifications", visual("no host")), "targetHostName")
	wantInvalid(t, e.post(t, e.admin, "/v1.0/users/alice/notifications", visual("bad host", "targetHostName", "unknown.example.com")), "targetHostName")
	wantInvalid(t, e.post(t, e.admin, "/v1.0/users/alice/notifications", map[string]any{"targetHostName": e.tasks.Host}), "payload")
	wantError(t, e.post(t, e.admin, "/v1.0/users/nobody/notifications", visual("x", "targetHostName", e.tasks.Host)), http.StatusNotFound, "itemNotFound")
	wantError(t, e.post(t, e.bob.Token, "/v1.0/users/alice/notifications", visual("x", "targetHostName", e.tasks.Host)), http.StatusForbidden, "accessDenied")
	sameSnapshot(t, "alice's feed", before, e.snapshot(t, e.alice.Token, feedAny))
}

// A disabled account's devices get nothing more (found by review: sends
// were stored and pushed to its subscriptions): sends to it, an
// application's or an admin's, are refused until it is enabled again.
func TestNothingIsSentToADisabledAccount(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	e.send(t, e.tasks, e.bobTasks, visual("before")).expect(t, http.StatusCreated)
	e.patch(t, e.admin, "/v1.0/users/"+e.bob.ID, map[string]any{"accountEnabled": false}).expect(t, http.StatusOK)
	before := e.snapshot(t, e.admin, "/v1.0/users/"+e.bob.ID+"/notifications?status=any")
	wantError(t, e.send(t, e.tasks, e.bobTasks, visual("after")), http.StatusForbidden, "accessDenied")
	wantError(t, e.post(t, e.admin, "/v1.0/users/"+e.bob.ID+"/notifications", visual("after", "targetHostName", e.tasks.Host)),
		http.StatusForbidden, "accessDenied")
	sameSnapshot(t, "bob's feed", before, e.snapshot(t, e.admin, "/v1.0/users/"+e.bob.ID+"/notifications?status=any"))
	// Others are not held up by it.
	e.send(t, e.tasks, e.aliceTasks, visual("alice")).expect(t, http.StatusCreated)
	e.patch(t, e.admin, "/v1.0/users/"+e.bob.ID, map[string]any{"accountEnabled": true}).expect(t, http.StatusOK)
	e.send(t, e.tasks, e.bobTasks, visual("enabled again")).expect(t, http.StatusCreated)
}

func TestNotificationQuotaIs507AndStoresNothing(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) { c.Limits.MaxNotificationsPerUser = 2 })
	first := e.sendOK(t, e.tasks, e.aliceTasks, visual("1", "appNotificationId", "one"))
	e.sendOK(t, e.tasks, e.aliceTasks, visual("2"))
	before := e.snapshot(t, e.alice.Token, feedAny)

	wantError(t, e.send(t, e.tasks, e.aliceTasks, visual("3")), http.StatusInsufficientStorage, "quotaLimitReached")
	wantError(t, e.send(t, e.mail, e.aliceMail, visual("3")), http.StatusInsufficientStorage, "quotaLimitReached")
	wantError(t, e.post(t, e.admin, "/v1.0/users/alice/notifications", visual("3", "targetHostName", e.tasks.Host)),
		http.StatusInsufficientStorage, "quotaLimitReached")
	sameSnapshot(t, "alice's feed", before, e.snapshot(t, e.alice.Token, feedAny))

	// A replace is not a new notification; other users have their own quota;
	// a delete frees room.
	e.send(t, e.tasks, e.aliceTasks, visual("1 again", "appNotificationId", "one")).expect(t, http.StatusOK)
	e.sendOK(t, e.tasks, e.bobTasks, visual("bob"))
	e.del(t, e.alice.Token, "/v1.0/me/notifications/"+first).expect(t, http.StatusNoContent)
	e.sendOK(t, e.tasks, e.aliceTasks, visual("3"))
}

// A notification past its expirationDateTime is gone for every client at
// once, not at the leader's next purge: it is not read, listed, changed or
// revived under its id by a send with its appNotificationId.
func TestANotificationPastItsExpiryIsGoneBeforeThePurge(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) { c.PurgeInterval = time.Hour })
	// The send's rule is rules level 1's, which a lone node raises itself.
	e.atRules(t, 1)
	expires := time.Now().Add(1500 * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z")
	old := e.sendOK(t, e.tasks, e.aliceTasks, map[string]any{"appNotificationId": "short",
		"payload": map[string]any{"rawContent": "x"}, "expirationDateTime": expires})
	e.get(t, e.alice.Token, "/v1.0/me/notifications/"+old).expect(t, http.StatusOK)
	eventually(t, 10*time.Second, "the notification gone once past its expiry", func() bool {
		return e.get(t, e.alice.Token, "/v1.0/me/notifications/"+old).Status == http.StatusNotFound
	})
	for _, path := range []string{"/v1.0/me/notifications", feedAny, "/v1.0/me/notifications/delta"} {
		if got := ids(e.get(t, e.alice.Token, path).expect(t, http.StatusOK).value(t)); slices.Contains(got, old) {
			t.Errorf("%s lists %s past its expiry", path, old)
		}
	}
	e.get(t, e.admin, "/v1.0/me/notifications/"+old+"/deliveries").expect(t, http.StatusNotFound)
	e.get(t, e.tasks.Token, "/v1.0/me/notifications/"+old, "X-UNS-ID", e.aliceTasks).expect(t, http.StatusNotFound)
	wantError(t, e.patch(t, e.alice.Token, "/v1.0/me/notifications/"+old, map[string]any{"readState": "read"}),
		http.StatusNotFound, "itemNotFound")
	r := e.send(t, e.tasks, e.aliceTasks, map[string]any{"appNotificationId": "short", "payload": map[string]any{"rawContent": "new"}})
	r.expect(t, http.StatusCreated)
	if id := str(r.obj(t), "id"); id == old {
		t.Errorf("the send revived %s instead of making a new notification", old)
	}
}

// A delta round that follows a deltaLink reports a notification past its
// expiry as removed ("expired"), as the feed and a get by id already treat
// it, not as the active notification it was before the leader's purge.
func TestADeltaRoundReportsANotificationPastItsExpiryAsRemoved(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, func(c *node.Config) { c.PurgeInterval = time.Hour })
	_, link := e.deltaRound(t, e.alice.Token, "/v1.0/me/notifications/delta")
	expires := time.Now().Add(1500 * time.Millisecond).UTC().Format("2006-01-02T15:04:05.000Z")
	old := e.sendOK(t, e.tasks, e.aliceTasks, map[string]any{"payload": map[string]any{"rawContent": "short-lived"},
		"expirationDateTime": expires})
	eventually(t, 10*time.Second, "the notification gone once past its expiry", func() bool {
		return e.get(t, e.alice.Token, "/v1.0/me/notifications/"+old).Status == http.StatusNotFound
	})
	items, _ := e.deltaRound(t, e.alice.Token, link)
	if len(items) != 1 || str(items[0], "id") != old {
		t.Fatalf("the delta round %v, want %s alone", items, old)
	}
	removed, _ := items[0]["@removed"].(map[string]any)
	if removed["reason"] != "expired" || items[0]["payload"] != nil {
		t.Errorf("the delta round reports %v past its expiry, want it removed as expired", items[0])
	}
}

// Host names ignore case (DNS): a targetHostName in other letters names the
// same application when sending, subscribing and filtering the feed.
func TestTargetHostNamesIgnoreCase(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	upper := strings.ToUpper(e.tasks.Host)
	id := e.sendOK(t, e.tasks, e.aliceTasks, map[string]any{"targetHostName": upper, "payload": map[string]any{"rawContent": "x"}})
	got := e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusOK).obj(t)
	if got["targetHostName"] != e.tasks.Host {
		t.Errorf("stored targetHostName %v, want %s", got["targetHostName"], e.tasks.Host)
	}
	if ids := ids(e.get(t, e.alice.Token, "/v1.0/me/notifications?targetHostName="+upper).expect(t, http.StatusOK).value(t)); !slices.Contains(ids, id) {
		t.Errorf("the feed filtered by %s: %v, want %s in it", upper, ids, id)
	}
	sub := e.post(t, e.alice.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": upper,
		"platformType": "web", "channel": map[string]any{"type": "live"}}).expect(t, http.StatusCreated).obj(t)
	if sub["targetHostName"] != e.tasks.Host {
		t.Errorf("subscription targetHostName %v, want %s", sub["targetHostName"], e.tasks.Host)
	}
	e.post(t, e.admin, "/v1.0/users/alice/notifications", visual("from admin", "targetHostName", upper)).expect(t, http.StatusCreated)
}

// A lone surrogate escape is refused as invalid UTF-8 is, rather than
// stored as U+FFFD; a pair is the character it encodes.
func TestLoneSurrogatesAreRefused(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	before := e.snapshot(t, e.alice.Token, feedAny)
	wantInvalid(t, e.send(t, e.tasks, e.aliceTasks, []byte(`{"payload":{"rawContent":"\ud800"}}`)), "")
	sameSnapshot(t, "alice's feed", before, e.snapshot(t, e.alice.Token, feedAny))
	id := e.sendOK(t, e.tasks, e.aliceTasks, []byte(`{"payload":{"rawContent":"\ud83d\ude00"}}`))
	got := e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusOK).obj(t)
	if p := got["payload"].(map[string]any); p["rawContent"] != "😀" {
		t.Errorf("rawContent %q, want the emoji", p["rawContent"])
	}
}

// Graph's SDKs write "@odata.type" into the objects they send; Herald reads
// past OData's control information, at any depth, and keeps a value that
// only mentions it.
func TestSendReadsPastODataAnnotations(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	body := `{"@odata.type":"#microsoft.graph.notification","targetHostName":"tasks.contoso.com",
		"payload":{"@odata.type":"#microsoft.graph.payloadTypes","rawContent":"{\"@odata.type\":\"kept\"}",
		"visualContent":{"@odata.type":"#microsoft.graph.visualProperties","title":"Annotated"}},
		"targetPolicy":{"@odata.type":"#microsoft.graph.targetPolicyEndpoints","platformTypes":["web"]}}`
	n := e.send(t, e.tasks, e.aliceTasks, body).expect(t, http.StatusCreated).obj(t)
	p, _ := n["payload"].(map[string]any)
	vis, _ := p["visualContent"].(map[string]any)
	if vis["title"] != "Annotated" || p["rawContent"] != `{"@odata.type":"kept"}` {
		t.Fatalf("payload %v", p)
	}
	// A body reads the same with annotations as without: which of two
	// names that differ in case wins, and two payload objects merged.
	for _, plain := range []string{
		`{"groupName":"second","GroupName":"first","payload":{"rawContent":"x"}}`,
		`{"GroupName":"first","groupName":"second","payload":{"rawContent":"x"}}`,
		`{"payload":{"rawContent":"x"},"payload":{"visualContent":{"title":"t"}}}`,
	} {
		annotated := strings.Replace(plain, "{", `{"@odata.type":"#microsoft.graph.notification",`, 1)
		var got [2]string
		for i, b := range []string{plain, annotated} {
			m := e.send(t, e.tasks, e.aliceTasks, b).expect(t, http.StatusCreated).obj(t)
			got[i] = fmt.Sprint(m["groupName"], m["payload"])
		}
		if got[0] != got[1] {
			t.Errorf("%s reads as %s, and with an annotation as %s", plain, got[0], got[1])
		}
	}
	// Any other unknown property is still refused.
	wantInvalid(t, e.send(t, e.tasks, e.aliceTasks, `{"payload":{"rawContent":"x"},"odata.type":"y"}`), "odata.type")
}

// Reading past annotations recursed once per level of nesting, with no
// bound: a 64 KiB body of '[' under an "@odata." name took about 32 MiB of
// stack per request, and a well-formed one nested 32,000 deep was stored,
// where encoding/json refuses anything past 10,000 levels. A body is read
// only as deep as a notification could go.
func TestSendRefusesDeeplyNestedAnnotatedBodies(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	before := e.snapshot(t, e.alice.Token, feedAny)
	const deep = 32000
	for _, body := range []string{
		`{"payload":{"rawContent":"x"},"@odata.x":` + strings.Repeat("[", deep) + strings.Repeat("]", deep) + `}`,
		`{"@odata.type":"x","payload":` + strings.Repeat("[", 2*deep),
		`{"@odata.type":"x","payload":{"rawContent":"x"},"extra":` + strings.Repeat(`{"a":`, deep/4),
		// Without annotations, as deep as encoding/json takes: the search
		// for the unknown property's path built a map for each level.
		`{"payload":{"rawContent":"x"},"zz":` + strings.Repeat(`{"a":`, 9990) + "1" + strings.Repeat("}", 9990) + "}",
	} {
		got := wantInvalid(t, e.send(t, e.tasks, e.aliceTasks, body), "")
		if !strings.Contains(got.Message, "nests deeper than") {
			t.Errorf("a body nested %d deep: %q, want it refused for its depth", deep, got.Message)
		}
	}
	sameSnapshot(t, "alice's feed", before, e.snapshot(t, e.alice.Token, feedAny))
	// A shallow annotated body still goes through.
	e.send(t, e.tasks, e.aliceTasks, `{"@odata.type":"x","payload":{"@odata.type":"y","rawContent":"x"}}`).expect(t, http.StatusCreated)
}

// Graph's own "Create and send a notification" page writes the request as
// POST https://graph.microsoft.com/beta/me/notifications/ (a trailing
// slash), and a sender ported from it keeps that URL: the slash is read
// past on every API path, as Graph did, and the answer and its links name
// the path without it.
func TestATrailingSlashIsReadPastAsGraphDid(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	for _, base := range []string{"/beta", "/v1.0"} {
		r := e.post(t, e.tasks.Token, base+"/me/notifications/", visual("slash "+base), "X-UNS-ID", e.aliceTasks).expect(t, http.StatusCreated)
		id := str(r.obj(t), "id")
		if r.Header.Get("Location") != "/v1.0/me/notifications/"+id {
			t.Errorf("POST %s/me/notifications/: Location %q", base, r.Header.Get("Location"))
		}
		e.get(t, e.alice.Token, base+"/me/notifications/"+id+"/").expect(t, http.StatusOK)
		e.patch(t, e.alice.Token, base+"/me/notifications/"+id+"/", map[string]any{"readState": "read"}).expect(t, http.StatusOK)
	}
	page := e.get(t, e.alice.Token, "/v1.0/me/notifications/?$top=1").expect(t, http.StatusOK).obj(t)
	if next := str(page, "@odata.nextLink"); !strings.Contains(next, "/v1.0/me/notifications?") {
		t.Errorf("nextLink %q of a request with a trailing slash", next)
	}
	e.get(t, e.alice.Token, "/v1.0/me/notifications/delta/").expect(t, http.StatusOK)
	e.get(t, e.alice.Token, "/v1.0/me/").expect(t, http.StatusOK)
	// Still refused: the slash is not a segment of its own, and a wrong
	// method on the path is 405 with or without it.
	wantError(t, e.get(t, e.alice.Token, "/v1.0/me/notifications//"), http.StatusNotFound, "itemNotFound")
	wantError(t, e.get(t, e.alice.Token, "/v1.0/"), http.StatusNotFound, "itemNotFound")
	if r := e.call(t, http.MethodPut, "/v1.0/me/notifications/", e.alice.Token, map[string]any{}); r.Status != http.StatusMethodNotAllowed || r.Header.Get("Allow") == "" {
		t.Errorf("PUT /v1.0/me/notifications/: %s, Allow %q", r, r.Header.Get("Allow"))
	}
}

// An expirationDateTime of year 1 is a time in the past, not an absent
// one: it is what a .NET client sends for a DateTimeOffset it never set
// (DateTimeOffset.MinValue), and taking it for "the default" would store
// a notification or renew a subscription the caller meant otherwise. It is
// refused as every other past time is; leaving the property out still
// means the default.
func TestAnExpiryOfYearOneIsInThePastNotTheDefault(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	feed := e.snapshot(t, e.alice.Token, feedAny)
	for _, v := range []string{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00+00:00", "0001-01-01T00:00:00.0000000+00:00"} {
		wantInvalid(t, e.send(t, e.tasks, e.aliceTasks, visual("year one", "expirationDateTime", v)), "expirationDateTime")
		wantInvalid(t, e.post(t, e.alice.Token, "/v1.0/me/notificationSubscriptions", map[string]any{
			"targetHostName": e.tasks.Host, "platformType": "web", "channel": map[string]any{"type": "live"},
			"expirationDateTime": v}), "expirationDateTime")
		wantInvalid(t, e.patch(t, e.alice.Token, "/v1.0/me/notificationSubscriptions/"+e.aliceTasks,
			map[string]any{"expirationDateTime": v}), "expirationDateTime")
	}
	sameSnapshot(t, "the feed", feed, e.snapshot(t, e.alice.Token, feedAny))
}

// Only a real trailing slash is read past: an escaped one (%2F) is part of
// the last segment, an id that ends in "/", and names no resource. Read as
// a trailing slash it named another: DELETE …/{id}%2F deleted {id}.
func TestAnEscapedTrailingSlashIsPartOfTheID(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	id := e.sendOK(t, e.tasks, e.aliceTasks, visual("kept"))
	for _, base := range []string{"/v1.0", "/beta"} {
		wantError(t, e.get(t, e.alice.Token, base+"/me/notifications/"+id+"%2F"), http.StatusNotFound, "itemNotFound")
		wantError(t, e.call(t, http.MethodDelete, base+"/me/notifications/"+id+"%2f", e.alice.Token, nil), http.StatusNotFound, "itemNotFound")
	}
	e.get(t, e.alice.Token, "/v1.0/me/notifications/"+id).expect(t, http.StatusOK)
}
