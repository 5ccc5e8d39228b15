package httpapi_test

import (
	"net/http"
	"testing"
)

// graphType is the control information Graph's SDKs write into every
// object they send.
func graphType(typ string, kv ...any) map[string]any {
	m := map[string]any{"@odata.type": "#microsoft.graph." + typ}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i].(string)] = kv[i+1]
	}
	return m
}

// Every JSON body, not only a send's, reads past OData control information
// ("@odata.type" and any other "@odata." property, at any depth), as Graph
// does; a property that is truly unknown beside it is still refused.
func TestEveryJSONBodyReadsPastODataControlInformation(t *testing.T) {
	t.Parallel()
	e := newSendEnv(t, nil)
	id := e.sendOK(t, e.tasks, e.aliceTasks, visual("n"))

	m := e.patch(t, e.alice.Token, "/v1.0/me/notifications/"+id,
		graphType("notification", "readState", "read", "@odata.etag", `W/"1"`)).expect(t, http.StatusOK).obj(t)
	if m["readState"] != "read" {
		t.Errorf("PATCH of a notification with @odata.type: %v", m)
	}

	sub := e.post(t, e.alice.Token, "/v1.0/me/notificationSubscriptions", graphType("notificationSubscription",
		"targetHostName", e.tasks.Host, "platformType", "web", "deviceName", "phone",
		"channel", graphType("channel", "type", "live"))).expect(t, http.StatusCreated).obj(t)
	sid := str(sub, "id")
	m = e.patch(t, e.alice.Token, "/v1.0/me/notificationSubscriptions/"+sid,
		graphType("notificationSubscription", "deviceName", "renamed")).expect(t, http.StatusOK).obj(t)
	if m["deviceName"] != "renamed" {
		t.Errorf("PATCH of a subscription with @odata.type: %v", m)
	}

	u := e.post(t, e.admin, "/v1.0/users", graphType("user", "@odata.context", "https://graph.microsoft.com/v1.0/$metadata#users/$entity",
		"userPrincipalName", "carol", "displayName", "Carol", "password", "carol-password", "roles", []string{"user"})).
		expect(t, http.StatusCreated).obj(t)
	m = e.patch(t, e.admin, "/v1.0/users/"+str(u, "id"), graphType("user", "displayName", "@odata.type")).expect(t, http.StatusOK).obj(t)
	if m["displayName"] != "@odata.type" {
		t.Errorf("PATCH of a user: displayName %v; a value that reads like control information is a value", m["displayName"])
	}

	a := e.post(t, e.admin, "/v1.0/applications", graphType("application", "displayName", "Contoso Notes",
		"targetHostName", "notes.contoso.com")).expect(t, http.StatusCreated).obj(t)
	aid := str(a, "id")
	m = e.patch(t, e.admin, "/v1.0/applications/"+aid, graphType("application", "displayName", "Notes")).expect(t, http.StatusOK).obj(t)
	if m["displayName"] != "Notes" {
		t.Errorf("PATCH of an application with @odata.type: %v", m)
	}
	cred := e.post(t, e.admin, "/v1.0/applications/"+aid+"/addPassword",
		graphType("passwordCredential", "displayName", "second")).expect(t, http.StatusOK).obj(t)
	e.post(t, e.admin, "/v1.0/applications/"+aid+"/removePassword",
		graphType("passwordCredential", "keyId", str(cred, "keyId"))).expect(t, http.StatusNoContent)

	e.post(t, "", "/ui/session", graphType("signIn", "username", "alice", "password", e.alice.Password)).expect(t, http.StatusOK)

	// Read past, not a licence for anything: what is unknown stays 400.
	wantInvalid(t, e.patch(t, e.alice.Token, "/v1.0/me/notifications/"+id,
		graphType("notification", "readState", "unread", "subject", "x")), "subject")
	wantInvalid(t, e.patch(t, e.admin, "/v1.0/users/carol", graphType("user", "odata.type", "x")), "odata.type")
}
