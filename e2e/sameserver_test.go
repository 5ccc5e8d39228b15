package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"testing"
)

// testAnyNodeIsTheSameServer checks, against real processes, that whatever
// one node hands out works at once on the two others: a token, a
// subscription (used with X-UNS-ID), the id of the notification sent
// through it, and a delta token; and a refresh token, redeemed each round
// on another node than the one that issued it. Each round takes the next node as the one
// that hands out, and uses what it got on the others with no wait at all:
// a node that does not know it yet must catch up with the leader before it
// answers 401, 403, 404 or 410.
func testAnyNodeIsTheSameServer(t *testing.T, servers []*server, f *fixture, host, upn string) {
	t.Helper()
	const rounds = 100
	apis := make([]*api, len(servers))
	for i, s := range servers {
		apis[i] = newAPI(s)
	}
	// One sign-in, then a refresh grant per round: the refresh token each
	// round hands out is redeemed on the next round's node (password
	// grants are rate-limited per user).
	tok, _, err := apis[0].token(url.Values{"grant_type": {"password"}, "username": {upn}, "password": {upn + "-password"}})
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	for round := range rounds {
		give, use, check := apis[round%3], apis[(round+1)%3], apis[(round+2)%3]

		// A token from one node, used at once on both others.
		tok, _, err = give.token(url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tok.RefreshToken}})
		if err != nil {
			t.Fatalf("round %d: refresh: %v", round, err)
		}
		for _, a := range []*api{use, check} {
			a.call(t, http.StatusOK, "GET", "/v1.0/me", tok.AccessToken, nil, nil, nil)
		}

		// A subscription made on one node, sent to at once through another;
		// the notification's id read at once on the third.
		var sub subscription
		give.call(t, http.StatusCreated, "POST", "/v1.0/me/notificationSubscriptions", tok.AccessToken,
			map[string]any{"targetHostName": host, "platformType": "web", "deviceName": fmt.Sprintf("device %d", round),
				"channel": map[string]string{"type": "live"}}, nil, &sub)
		var sent notification
		use.call(t, http.StatusCreated, "POST", "/v1.0/me/notifications", f.appToken,
			map[string]any{"appNotificationId": fmt.Sprintf("same-server-%d", round), "payload": map[string]any{"rawContent": "x"}},
			map[string]string{"X-UNS-ID": sub.ID}, &sent)
		check.call(t, http.StatusOK, "GET", "/v1.0/me/notifications/"+sent.ID, tok.AccessToken, nil, nil, nil)

		// A delta token from the node that took the send, followed at
		// once on the one that handed out the token.
		var delta struct {
			DeltaLink string `json:"@odata.deltaLink"`
			NextLink  string `json:"@odata.nextLink"`
		}
		next := "/v1.0/me/notifications/delta?$top=1000"
		for pages := 0; ; pages++ {
			delta.DeltaLink, delta.NextLink = "", ""
			use.call(t, http.StatusOK, "GET", next, tok.AccessToken, nil, nil, &delta)
			if delta.NextLink == "" || pages > 100 {
				break
			}
			next = pathOf(t, delta.NextLink)
		}
		if delta.DeltaLink == "" {
			t.Fatalf("round %d: no deltaLink", round)
		}
		give.call(t, http.StatusOK, "GET", pathOf(t, delta.DeltaLink), tok.AccessToken, nil, nil, nil)

		// The subscription goes, through the third node, so that the user
		// stays under its subscription quota.
		check.call(t, http.StatusNoContent, "DELETE", "/v1.0/me/notificationSubscriptions/"+sub.ID, tok.AccessToken, nil, nil, nil)
	}
}

// pathOf is a link's path and query, to follow it on another node.
func pathOf(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatalf("link %q: %v", link, err)
	}
	return u.RequestURI()
}
