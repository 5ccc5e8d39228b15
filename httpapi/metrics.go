package httpapi

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/fanout"
)

type metrics struct {
	requests      *prometheus.CounterVec
	latency       *prometheus.HistogramVec
	notifications *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, hub *fanout.Hub) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_http_requests_total", Help: "HTTP requests by route and status.",
		}, []string{"route", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "herald_http_request_duration_seconds", Help: "HTTP request latency by route.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		notifications: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_notifications_total", Help: "Notifications accepted, by outcome (created or replaced).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.requests, m.latency, m.notifications)
	if hub != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_open_streams", Help: "Live SSE and WebSocket streams open on this node.",
		}, func() float64 { return float64(hub.Open()) }))
	}
	return m
}

func (m *metrics) observe(route string, status int, took time.Duration) {
	if route == "stream" {
		return // a stream's duration is its lifetime, not a latency
	}
	m.requests.WithLabelValues(route, strconv.Itoa(status)).Inc()
	m.latency.WithLabelValues(route).Observe(took.Seconds())
}
