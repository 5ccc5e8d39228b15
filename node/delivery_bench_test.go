package node_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-notify/herald/client"
	"github.com/herald-notify/herald/fanout/webpush/webpushtest"
	"github.com/herald-notify/herald/node"
)

// benchSubscriptions is how many of the user's devices each notification
// goes to; one op is one notification, so benchSubscriptions deliveries.
const benchSubscriptions = 100

// countingEndpoint is a loopback receiver that reads each request whole,
// counts it and answers status: the cheapest honest endpoint, so that the
// benchmark measures the node, not the stand-in.
func countingEndpoint(b *testing.B, status int) (*httptest.Server, *atomic.Int64) {
	var n atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n.Add(1)
		w.WriteHeader(status)
	}))
	b.Cleanup(srv.Close)
	return srv, &n
}

// benchDelivery sends b.N notifications to a user with benchSubscriptions
// subscriptions made by channel, and measures until the receiver has had
// every delivery: POST, Raft commit, delivery records, the engine's
// workers, the sender's protocol work, and the outcomes written back
// through Raft while it runs.
func benchDelivery(b *testing.B, status int, channel func(url string, i int) (platform string, ch any)) {
	r := newDeliveryRig(b, func(c *node.Config) {
		c.Limits.MaxNotificationsPerUser, c.Limits.MaxSubscriptionsPerUser = 0, 0
		// One loopback host stands for many endpoints: let it have every
		// worker, as many distinct hosts would.
		c.Delivery.PerHost = c.Delivery.Workers
	})
	srv, received := countingEndpoint(b, status)
	for i := range benchSubscriptions {
		platform, ch := channel(srv.URL, i)
		r.subscribe(platform, ch)
	}
	want := int64(b.N) * benchSubscriptions
	b.ResetTimer()
	for i := range b.N {
		r.send(client.Notification{AppNotificationID: fmt.Sprintf("bench-%d", i),
			Payload: &client.Payload{RawContent: `{"build":4711}`, VisualContent: &client.VisualContent{
				Title: fmt.Sprintf("Build %d finished", i), Body: "All 1432 tests passed."}}})
	}
	deadline := time.Now().Add(5 * time.Minute)
	for received.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries arrived", received.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(want)/b.Elapsed().Seconds(), "deliveries/s")
}

// BenchmarkDeliveryWebhook measures signed Standard Webhooks deliveries per
// second through a real node to a loopback receiver.
func BenchmarkDeliveryWebhook(b *testing.B) {
	benchDelivery(b, http.StatusNoContent, func(url string, i int) (string, any) {
		return "windows", map[string]any{"type": "webhook", "url": fmt.Sprintf("%s/hooks/%d", url, i)}
	})
}

// BenchmarkDeliveryWebPush measures Web Push deliveries per second (an
// RFC 8291 encryption, with its ECDH, per message, and a VAPID header)
// through a real node to a loopback push service.
func BenchmarkDeliveryWebPush(b *testing.B) {
	benchDelivery(b, http.StatusCreated, func(url string, i int) (string, any) {
		return "web", webpushtest.NewBrowser(b).Channel(fmt.Sprintf("%s/push/%d", url, i))
	})
}
