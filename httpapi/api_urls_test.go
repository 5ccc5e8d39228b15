package httpapi_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/herald-notify/herald/node"
)

// refusedHosts are spellings of loopback, private and other non-public
// addresses, each of which a resolver or browser reads as such (issue 8,
// item 5). Every one must be refused when a subscription is created.
var refusedHosts = []string{
	"localhost", "LOCALHOST", "localhost.", "LOCALHOST.", "api.localhost", "x.LocalHost.",
	"ｌｏｃａｌｈｏｓｔ", "ip6-localhost",
	"127.0.0.1", "127.1", "127.0.1", "2130706433", "0x7f000001", "0x7f.0.0.1", "0x7F.1", "0177.0.0.1",
	"017700000001", "127.0.0.1.", "127。0。0。1", "127．0．0．1", "①②⑦.0.0.1", "%31%32%37.0.0.1",
	"0", "0.0.0.0", "10.0.0.1", "10.1", "167772161", "172.16.0.1", "192.168.1.1", "0xc0.0xa8.1.1",
	"169.254.169.254", "100.64.0.1", "100.127.255.254", "224.0.0.1", "255.255.255.255", "240.0.0.1",
	"[::1]", "[::1%25lo]", "[0:0:0:0:0:0:0:1]", "[::]", "[fe80::1%25eth0]", "[fc00::1]", "[fd12:3456::1]",
	"[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::ffff:10.0.0.1]", "[::127.0.0.1]",
	"[64:ff9b::127.0.0.1]", "[64:ff9b::a00:1]", "[64:ff9b:1::1]", "[2002:7f00:1::]", "[2002:c0a8:101::1]",
	"[ff02::1]",
	// Hosts no resolver reads as a name: refused rather than guessed at.
	"256.0.0.1", "1.2.3.4.5", "0x100000000", "08.0.0.1", "a..b",
}

// acceptedHosts are public: names, public addresses in any spelling, and
// IPv6 forms that carry a public IPv4 address.
var acceptedHosts = []string{
	"push.example.net", "PUSH.Example.NET.", "fcm.googleapis.com", "updates.push.services.mozilla.com",
	"例え.テスト", "xn--r8jz45g.xn--zckzah", "localhost.example.com", "8.8.8.8", "8.8.8.8.", "0x08080808",
	"134744072", "[2606:4700:4700::1111]", "[64:ff9b::808:808]", "[2002:808:808::1]", "push.example.net:8443",
}

func TestSubscribeRefusesEverySpellingOfAPrivateDestination(t *testing.T) {
	t.Parallel()
	// Over a hundred requests from one user: the user rate limit is not
	// what is under test.
	n := start(t, func(c *node.Config) { c.Limits.UserRate = 0 })
	a := n.newApp(t, "tasks.contoso.com")
	u := n.newUser(t, "alice")
	p256dh, auth := pushKeys(t)
	webPush := func(host string) map[string]any {
		return map[string]any{"targetHostName": a.Host, "platformType": "web", "channel": map[string]any{
			"type": "webPush", "endpoint": "https://" + host + "/push/abc", "keys": map[string]any{"p256dh": p256dh, "auth": auth}}}
	}
	webhook := func(host string) map[string]any {
		return map[string]any{"targetHostName": a.Host, "platformType": "web", "channel": map[string]any{
			"type": "webhook", "url": "https://" + host + "/hook"}}
	}
	for _, h := range refusedHosts {
		wantInvalid(t, n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", webPush(h)), "channel.endpoint")
		wantInvalid(t, n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", webhook(h)), "channel.url")
	}
	for _, h := range acceptedHosts {
		n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", webPush(h)).expect(t, http.StatusCreated)
		n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", webhook(h)).expect(t, http.StatusCreated)
	}
	// Plain http is refused whatever the host.
	plain := webhook("hooks.example.com")
	plain["channel"].(map[string]any)["url"] = "http://hooks.example.com/hook"
	wantInvalid(t, n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", plain), "channel.url")
	// A refusal says why, for the developer who sent it.
	e := wantInvalid(t, n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", webhook("127.1")), "channel.url")
	if !strings.Contains(e.Message, "127.0.0.1") || !strings.Contains(e.Message, "loopback") {
		t.Errorf("message %q does not name the canonical address", e.Message)
	}
}

func TestSubscribeAllowsPrivateDestinationsWhenConfigured(t *testing.T) {
	t.Parallel()
	n := start(t, func(c *node.Config) { c.WebPush.AllowPrivate, c.Webhook.AllowPrivate = true, true })
	a := n.newApp(t, "tasks.contoso.com")
	u := n.newUser(t, "alice")
	for _, raw := range []string{"http://127.0.0.1:9/hook", "https://localhost/hook", "http://[::1%25lo]:8080/", "https://10.1/x"} {
		n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": a.Host,
			"platformType": "web", "channel": map[string]any{"type": "webhook", "url": raw}}).expect(t, http.StatusCreated)
	}
	// Still only http and https.
	wantInvalid(t, n.post(t, u.Token, "/v1.0/me/notificationSubscriptions", map[string]any{"targetHostName": a.Host,
		"platformType": "web", "channel": map[string]any{"type": "webhook", "url": "ftp://127.0.0.1/x"}}), "channel.url")
}
