// Package httpapi serves Herald's REST API (API.md): routing, authentication,
// Graph-shaped errors, paging and delta tokens, and the live stream.
package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/fanout"
	"github.com/herald-notify/herald/internal/connlimit"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// State is what the handlers need of the replicated store: proposals that
// commit through Raft, and reads of this node's applied state.
type State interface {
	Propose(ctx context.Context, cmd *raft.Command) (any, error)
	Token(hash string) (*resource.TokenRecord, bool, error)
	User(id string) (*resource.UserRecord, bool, error)
	UserEnabled(id string) (enabled, found bool, err error)
	UserByName(idOrUPN string) (*resource.UserRecord, bool, error)
	ListUsers(after string, limit int) (raft.Page[resource.UserRecord], error)
	App(id string) (*resource.ApplicationRecord, bool, error)
	AppBy(ref string) (*resource.ApplicationRecord, bool, error)
	ListApps(after string, limit int) (raft.Page[resource.ApplicationRecord], error)
	Subscription(id string) (*resource.SubscriptionRecord, bool, error)
	ListSubscriptions(uid string) ([]resource.SubscriptionRecord, error)
	Notification(uid, nid string) (*resource.NotificationRecord, bool, error)
	ListNotifications(uid, after string, limit int, keep func(*resource.NotificationRecord) bool) (raft.Page[resource.NotificationRecord], error)
	// NotificationViews and NotificationView read notifications in their
	// API form, encoded once and cached, for the feed and the delta. filter
	// names keep for the cache of pages: equal names, equal filters; a page
	// of an empty name is not cached. examine, above zero, bounds the
	// notifications a page reads: one that reaches it ends short.
	NotificationViews(uid, after string, limit, examine int, filter string, keep func(*raft.NotificationView) bool) (raft.ViewPage, error)
	NotificationView(uid, nid string) (*raft.NotificationView, bool, error)
	LastSeq() (uint64, error)
	ChangeFloor(uid string) (uint64, error)
	// LostSeq says whether a cursor names a change that a restore from a
	// backup took back.
	LostSeq(seq uint64) (bool, error)
	Changes(uid string, after uint64, limit int) ([]resource.Change, error)
	ChangeHeads(uid string, after uint64, limit int) ([]resource.Change, error)
	VAPID() ([]byte, bool, error)
	Deliveries(uid, nid string) ([]resource.DeliveryRecord, error)
	// Barrier returns once this node has applied everything the leader had
	// committed when it was asked (bounded; an error past the bound).
	// Handlers run one before an answer that says "not here" (lookAgain)
	// and up front for ConsistencyLevel: strong.
	Barrier(ctx context.Context) error
	// Sessions are a user's sign-in sessions; AuditLog pages through the
	// audit log (audit.go, sessions.go).
	Sessions(uid string) ([]resource.SessionRecord, error)
	AuditLog(q raft.AuditQuery) (raft.Page[resource.AuditRecord], error)
	// WaitReplicated returns once every other node that answers has
	// applied what this one has (a revocation waits on it).
	WaitReplicated(ctx context.Context) error
}

// Ops is what the operational endpoints need of the node.
type Ops interface {
	Ready(ctx context.Context) error
	// ReadyNotes are conditions that /readyz reports beside "ready"
	// because the operator must act on them although the node still
	// serves (a full disk: reads go on, writes get 507).
	ReadyNotes() map[string]string
	Cluster() any
	// AddNode and RemoveNode change the membership (API.md §8); a
	// follower asks the leader.
	AddNode(ctx context.Context, id, raftAddr, httpAddr string) error
	RemoveNode(ctx context.Context, id string) error
	Backup(ctx context.Context, w io.Writer) error
}

// Options configure the API server.
type Options struct {
	State  State
	Hub    *fanout.Hub
	Ops    Ops
	Logger *slog.Logger
	// Registry receives the API's metrics; /metrics serves Gatherer.
	Registry prometheus.Registerer
	Gatherer prometheus.Gatherer

	PublicURL               string
	AppRate, UserRate       float64
	AppBurst, UserBurst     int
	MaxNotificationsPerUser int
	MaxSubscriptionsPerUser int
	MaxStreamsPerUser       int
	ChangeRetention         time.Duration
	// Heartbeat is the interval of the live stream's keep-alive comments.
	Heartbeat time.Duration
	// AllowPrivateWebPush and AllowPrivateWebhook permit http:// and
	// private addresses as destinations (API.md §7).
	AllowPrivateWebPush bool
	AllowPrivateWebhook bool
	// VAPIDPublicKey returns the Web Push application server key; nil when
	// Web Push is not set up.
	VAPIDPublicKey func() (string, error)
	// ReportDelivery records that a live stream opened for a subscription
	// passed a change on (the delivery engine batches these through Raft).
	ReportDelivery func(raft.DeliveryOutcome)
	// UI serves /ui/; nil leaves it out.
	UI http.Handler
	// ClusterPeer serves GET /internal/cluster/peer, the one inter-node
	// route of the public listener (a joining node's lookup of this node's
	// inter-node address); nil leaves it out. Served here, it answers with
	// a request-id like every other path, and the other methods and the
	// other /internal/cluster/ paths get the API's 405 and 404.
	ClusterPeer http.Handler
	// MaxInFlight bounds the requests this node works on at once, live
	// streams and /healthz aside; beyond it a request gets 503 at once.
	// The bound in force is lower while replicated writes are slow
	// (admission.go). Zero: no bound.
	MaxInFlight int
	// BodyTimeout is how long a request body may take to start arriving;
	// BodyMinRate (bytes per second) extends it as the body arrives. A body
	// slower than that is cut off (connlimit.BodyReader). Zero: no limit.
	BodyTimeout time.Duration
	BodyMinRate int64
	// MetricsToken is a bearer token that reads /metrics (a scraper's),
	// besides an admin's access token. Empty: admins only.
	MetricsToken string
	// MetricsElsewhere says the node serves MetricsHandler on a listener
	// of its own for scrapers: the public /metrics then takes admins only.
	MetricsElsewhere bool
	// Profiling serves Go's runtime profiles at /debug/pprof/ beside
	// MetricsHandler's /metrics (profiling.go).
	Profiling bool
	// SignInLimits, when set, shares sign-in throttling with the cluster:
	// here means this node's own counters are the cluster's (it leads);
	// otherwise it applies the leader's answer for addr and user (a wait,
	// or with failed, counting a failure). An error means the leader could
	// not be asked, and the sign-in is refused with 503.
	SignInLimits func(ctx context.Context, addr, user string, failed bool) (wait time.Duration, here bool, err error)
	// AuditClock, when set, dates audit records instead of time.Now.
	AuditClock func() time.Time
	// SignInClock, when set, is the sign-in throttle's clock instead of
	// the callers' time.Now.
	SignInClock func() time.Time
	// TokenClock, when set, issues tokens and judges refresh tokens
	// instead of time.Now.
	TokenClock func() time.Time
}

// Server is the HTTP API of one node.
type Server struct {
	opts    Options
	state   State
	hub     *fanout.Hub
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	limits  *limiter
	// hashes bounds argon2id work (credential.Pool): sign-in checks and
	// password changes.
	hashes *credential.Pool
	// admit bounds the requests being worked on (MaxInFlight, adapted to
	// the write latency: admission.go); nil: no bound.
	admit *admission
	// sec counts failed sign-ins and session use for the audit log and
	// the session list (audit.go).
	sec *securityLog

	// patterns lists every route registered through handle, for the
	// authorisation test's check that it covers them all (Patterns).
	patterns    []string
	rootMethods map[string][]string // handleRoot's routes: path → methods
	// fold respells the fixed segments of /v1.0 and /beta paths
	// (pathcase.go).
	fold *segmentFold

	streamsMu sync.Mutex
	streams   map[string]int // open streams per user
	stopping  chan struct{}

	// The live streams, for heartbeats and shutdown (livestream.go).
	liveMu    sync.Mutex
	beats     *beatWheel                          // every live stream, by when its heartbeat is due
	byUser    map[string]map[*liveStream]struct{} // the same, by user, for RecheckStreams
	liveGone  chan struct{}                       // a stream ended
	sweepOnce sync.Once
	stopOnce  sync.Once
}

// handlerFunc is a handler that returns its error for the wrapper to write.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// New builds the server and its routes.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Heartbeat <= 0 { // a negative interval, too: the first beat's random phase needs one
		opts.Heartbeat = 25 * time.Second
	}
	if opts.Registry == nil {
		opts.Registry = prometheus.NewRegistry()
	}
	s := &Server{opts: opts, state: opts.State, hub: opts.Hub, log: opts.Logger,
		mux: http.NewServeMux(), metrics: newMetrics(opts.Registry, opts.Hub),
		limits:  newLimiter(),
		hashes:  credential.NewPool(runtime.NumCPU(), 2*runtime.NumCPU()),
		streams: map[string]int{}, stopping: make(chan struct{}), liveGone: make(chan struct{}, 1), sec: newSecurityLog()}
	if opts.MaxInFlight > 0 {
		s.admit = newAdmission(opts.MaxInFlight)
		s.state = timedState{State: opts.State, a: s.admit}
		opts.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_http_requests_in_flight",
			Help: "Requests counted against max-in-flight that this node works on now.",
		}, func() float64 { n, _ := s.admit.state(); return float64(n) }), prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "herald_http_in_flight_limit",
			Help: "The bound on requests in flight now: max-in-flight, lowered while replicated writes are slow.",
		}, func() float64 { _, l := s.admit.state(); return l }))
	}
	s.routes()
	return s
}

// Stop ends live streams with a retry hint; call it when shutdown begins.
// The sign-ins counted for the audit log since the last flush are
// proposed then, for at most a second, so a node without a quorum still
// stops in time.
func (s *Server) Stop() {
	s.stopOnce.Do(func() {
		close(s.stopping)
		// Hijacked streams are not the HTTP server's to wait for.
		s.waitStreams(2 * time.Second)
		s.flushCounts(time.Second)
	})
}

// router registers method patterns and answers other methods on a known
// path with 405 and Allow, in the contract's error shape.
type router struct {
	s       *Server
	methods map[string][]string
}

func (rt *router) handle(method, path string, h handlerFunc) {
	for _, base := range []string{"/v1.0", "/beta"} {
		p := base + path
		if strings.HasPrefix(path, "/oauth2") || strings.HasPrefix(path, "/healthz") ||
			strings.HasPrefix(path, "/readyz") || strings.HasPrefix(path, "/metrics") {
			if base == "/beta" {
				continue
			}
			p = path
		}
		route := method + " " + p
		rt.s.handle(route, rt.s.wrap(route, h))
		rt.methods[p] = append(rt.methods[p], method)
	}
}

// handle registers an endpoint: every route goes through here, so that
// Patterns lists them all.
func (s *Server) handle(pattern string, h http.Handler) {
	s.patterns = append(s.patterns, pattern)
	s.mux.Handle(pattern, h)
}

// Patterns returns the registered routes ("METHOD /path/{wildcard}"; a
// pattern without a method serves every method), leaving out the 405
// answers for other methods and the catch-all 404.
func (s *Server) Patterns() []string { return slices.Clone(s.patterns) }

// handleRoot registers a route outside /v1.0 that has no 405 fallback of
// its own (the web UI's session, the API description): name labels its
// metrics.
func (s *Server) handleRoot(route, name string, h handlerFunc) {
	s.handle(route, s.wrap(name, h))
	if method, path, ok := strings.Cut(route, " "); ok {
		if s.rootMethods == nil {
			s.rootMethods = map[string][]string{}
		}
		s.rootMethods[path] = append(s.rootMethods[path], method)
	}
}

// Routes lists the "METHOD /path" patterns the API serves, in the form of
// the paths of its OpenAPI description: paths under /v1.0 stand for their
// /beta aliases too, and HEAD is implied by GET. The web UI's static files
// and the nodes' own /internal/ route are not part of it.
func (s *Server) Routes() []string {
	var out []string
	for _, p := range s.patterns {
		method, path, ok := strings.Cut(p, " ")
		if ok && method != "" && !strings.HasPrefix(path, "/beta/") && !strings.HasPrefix(path, "/internal/") {
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// standardMethods each get a pattern on every known path.
func standardMethods() []string {
	return []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodPatch, http.MethodDelete, http.MethodOptions}
}

func (rt *router) finish() {
	// The routes outside /v1.0 answer other methods with 405 too, not
	// with the catch-all's 404.
	for p, ms := range rt.s.rootMethods {
		rt.methods[p] = append(rt.methods[p], ms...)
	}
	allowed := map[string]string{} // path pattern → Allow
	rt.s.fold = newSegmentFold()
	for p, ms := range rt.methods {
		if strings.HasPrefix(p, "/v1.0/") || strings.HasPrefix(p, "/beta/") {
			rt.s.fold.add(p)
		}
		allow := append([]string{}, ms...)
		if slices.Contains(ms, http.MethodGet) {
			allow = append(allow, http.MethodHead)
		}
		sort.Strings(allow)
		header := strings.Join(allow, ", ")
		allowed[p] = header
		h := rt.s.wrap("405", func(w http.ResponseWriter, r *http.Request) error {
			w.Header().Set("Allow", header)
			return resource.Errorf(resource.CodeMethodNotAllowed, "%s is not allowed here; use %s.", r.Method, header)
		})
		// Each other method gets its own pattern: a method-less fallback
		// would conflict with the wildcard routes beside literal ones.
		for _, m := range standardMethods() {
			if !slices.Contains(allow, m) {
				rt.s.mux.Handle(m+" "+p, h)
			}
		}
	}
	rt.s.mux.Handle("/", rt.s.wrap("404", func(w http.ResponseWriter, r *http.Request) error {
		if r.URL.Path == "/" {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				// A form or a client posting to the bare host is not
				// sent on to the web UI, where a browser would turn
				// its POST into a GET.
				w.Header().Set("Allow", "GET, HEAD")
				return resource.Errorf(resource.CodeMethodNotAllowed, "%s is not allowed here; use GET, HEAD.", r.Method)
			}
			http.Redirect(w, r, "/ui/", http.StatusFound)
			return nil
		}
		// Methods without a pattern of their own (TRACE, CONNECT, any
		// extension method) land here; on a known path they get the same
		// 405 as the standard ones. A GET finds the path's pattern, since
		// every known path has a handler for every standard method.
		if !slices.Contains(standardMethods(), r.Method) {
			probe := r.Clone(r.Context())
			probe.Method = http.MethodGet
			if _, pattern := rt.s.mux.Handler(probe); pattern != "" {
				_, path, _ := strings.Cut(pattern, " ")
				if header, ok := allowed[path]; ok {
					w.Header().Set("Allow", header)
					return resource.Errorf(resource.CodeMethodNotAllowed, "%s is not allowed here; use %s.", r.Method, header)
				}
			}
		}
		return resource.Errorf(resource.CodeNotFound, "There is no resource at %s.", r.URL.Path)
	}))
}

// ServeHTTP adds the request id headers every response carries.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := resource.NewGUID()
	w.Header().Set("request-id", id)
	if c := r.Header.Get("client-request-id"); c != "" && len(c) <= 256 {
		w.Header().Set("client-request-id", c)
	}
	if p := r.URL.Path; p != CleanPath(p) {
		// net/http's mux would redirect to the clean path with an HTML
		// body (and for a POST, drop the body on the way): a client that
		// builds "/v1.0//me" has a bug to be told of in the API's terms.
		s.writeError(w, r, resource.Errorf(resource.CodeNotFound,
			"No resource has the path %q: a path has no empty, \".\" or \"..\" segments.", p))
		return
	}
	if r2, ok := s.respelled(r); ok {
		r = r2
	}
	if p := r.URL.Path; len(p) > len("/v1.0/") && p[len(p)-1] == '/' &&
		(strings.HasPrefix(p, "/v1.0/") || strings.HasPrefix(p, "/beta/")) &&
		(r.URL.RawPath == "" || strings.HasSuffix(r.URL.RawPath, "/")) {
		// Graph reads past a trailing slash, and its own page for sending
		// writes POST .../me/notifications/: a sender ported from it must
		// not get a 404. The path is served, and its links built, as the
		// one without. An escaped slash (%2F) is not one: it ends the last
		// segment, an id, and without it …/{id}%2F would name {id}.
		u := *r.URL
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = strings.TrimSuffix(u.RawPath, "/")
		r = r.WithContext(r.Context())
		r.URL = &u
	}
	s.mux.ServeHTTP(w, r)
}

// respelled returns r with the fixed segments of its API path spelled as
// the routes spell them (segmentFold), or false when they are already.
// The request is served as if sent so, and its links name that path.
func (s *Server) respelled(r *http.Request) (*http.Request, bool) {
	path, raw := r.URL.Path, r.URL.RawPath
	var changed bool
	if raw == "" {
		path, changed = s.fold.respell(path, false)
	} else if raw, changed = s.fold.respell(raw, true); changed {
		var err error
		if path, err = url.PathUnescape(raw); err != nil {
			return r, false
		}
	}
	if !changed {
		return r, false
	}
	u := *r.URL
	u.Path, u.RawPath = path, raw
	r = r.WithContext(r.Context())
	r.URL = &u
	return r, true
}

// CleanPath is p as net/http's mux would redirect it: no empty, "." or ".."
// segments, a trailing slash kept.
func CleanPath(p string) string {
	if p == "" {
		return "/"
	}
	if p[0] != '/' {
		p = "/" + p
	}
	np := path.Clean(p)
	if p[len(p)-1] == '/' && np != "/" {
		np += "/"
	}
	return np
}

// unsupportedOption refuses an OData system query option Herald does not
// implement ($filter, $orderby, $select, …) with 400, as Graph refuses one a
// resource does not support: ignored, it would hand back an unfiltered
// answer its caller takes for a filtered one.
func unsupportedOption(r *http.Request) error {
	raw := r.URL.RawQuery
	if !strings.Contains(raw, "$") && !strings.Contains(raw, "%24") {
		return nil
	}
	for k, vs := range r.URL.Query() {
		switch {
		case !strings.HasPrefix(k, "$"):
		case k == "$top", k == "$skiptoken", k == "$deltatoken":
			// OData allows each once, and Graph refuses a second: the
			// first alone would page by a value the caller did not mean.
			if len(vs) > 1 {
				return resource.Invalid(k, "The query option %s is given more than once.", k)
			}
		default:
			return resource.Invalid(k, "The query option %s is not supported; see the API's description of this resource.", k)
		}
	}
	return nil
}

// odataOptions are OData's system query options, which Graph's beta
// endpoint takes with or without their "$".
var odataOptions = map[string]bool{"top": true, "skip": true, "skiptoken": true, "deltatoken": true,
	"filter": true, "orderby": true, "select": true, "expand": true, "count": true, "search": true,
	"format": true, "apply": true, "compute": true, "levels": true}

// dollarOptional gives a /beta request's system query options written
// without "$" their "$", as Graph's beta endpoint reads them: ?top=5 is
// $top=5 (and ?filter=… is refused as $filter is, not ignored).
func dollarOptional(r *http.Request) (*http.Request, error) {
	if r.URL.RawQuery == "" {
		return r, nil
	}
	q := r.URL.Query()
	var bare []string
	for k := range q {
		if odataOptions[k] {
			bare = append(bare, k)
		}
	}
	if len(bare) == 0 {
		return r, nil
	}
	for _, k := range bare {
		if _, both := q["$"+k]; both {
			return r, resource.Invalid("$"+k, "The query option $%s is given both with and without its $.", k)
		}
		q["$"+k] = q[k]
		delete(q, k)
	}
	u := *r.URL
	u.RawQuery = q.Encode()
	r = r.Clone(r.Context())
	r.URL = &u
	return r, nil
}

// wrap turns a handlerFunc into an http.Handler that writes its error,
// recovers panics as 500s and counts the request by route and status.
func (s *Server) wrap(route string, h handlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Streams keep their own write deadline.
		sw := &statusWriter{ResponseWriter: w, bounded: !strings.HasSuffix(route, "/notifications/stream")}
		start := time.Now()
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "route", route, "panic", p)
				if !sw.wrote {
					s.writeError(sw, r, errPanic)
				}
			}
			s.metrics.observe(route, sw.status(), time.Since(start))
		}()
		if s.admit != nil && !longOrCheap(route) {
			if !s.admit.acquire() {
				s.writeError(sw, r, unavailable("The server is busy; retry after the time in Retry-After.", time.Second))
				return
			}
			defer s.admit.release()
		}
		if r.ContentLength != 0 && s.opts.BodyTimeout > 0 {
			r.Body = connlimit.NewBodyReader(r.Body, http.NewResponseController(w), s.opts.BodyTimeout, s.opts.BodyMinRate)
		}
		r.Body = http.MaxBytesReader(sw, r.Body, MaxBodyBytes*16)
		r, err := s.consistency(r)
		if err == nil && route != "404" {
			if strings.HasPrefix(r.URL.Path, "/beta/") {
				r, err = dollarOptional(r)
			}
			if err == nil {
				err = unsupportedOption(r)
			}
		}
		if err == nil {
			err = h(sw, r)
		}
		if err != nil {
			if sw.wrote {
				s.log.Warn("error after response started", "route", route, "error", err)
				return
			}
			s.writeError(sw, r, err)
		}
	})
}

// longOrCheap tells the routes that do not count against MaxInFlight: live
// streams, which last for hours and have their own per-user cap; /healthz,
// which must keep answering when the server is busy so that a supervisor
// does not restart a node for being loaded; and /metrics, so that
// monitoring sees the overload rather than a gap; and the inter-node
// address lookup, which a joining node needs and costs nothing.
func longOrCheap(route string) bool {
	return strings.HasSuffix(route, "/notifications/stream") || route == "GET /healthz" || route == "GET /metrics" ||
		route == "GET /internal/cluster/peer" ||
		strings.HasPrefix(route, "GET /debug/pprof/")
}

type panicError struct{}

func (panicError) Error() string { return "handler panicked" }

var errPanic = panicError{}

type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
	// bounded says each write is bounded: a client must take every
	// writeChunk of the answer within writeTimeout. The server has no
	// write timeout (streams last for hours), and a client that asked for
	// a large page ($top=1000 of large notifications is 4 MiB) and read
	// none of it held the page and a place among the requests in flight
	// for as long as it kept the connection open.
	bounded bool
	// rc sets the deadlines; made at the first write that needs one, so
	// that a small answer costs no allocation for it.
	rc *http.ResponseController
	// buffered counts what was written while the whole answer still fit
	// net/http's buffer (smallAnswer): such a write never reaches the
	// socket, so it needs no deadline (a send's answer, most answers).
	buffered int
}

// writeChunk is how much of an answer a client must take within
// writeTimeout: 6.4 KiB/s at the least.
const writeChunk = 64 << 10

// smallAnswer is what net/http buffers of an answer before it writes to the
// connection (its chunking threshold; the connection's buffer is larger).
const smallAnswer = 2 << 10

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	if !w.bounded {
		return w.ResponseWriter.Write(b)
	}
	if w.buffered >= 0 && w.buffered+len(b) <= smallAnswer {
		n, err := w.ResponseWriter.Write(b)
		w.buffered += n
		return n, err
	}
	w.buffered = -1
	if w.rc == nil {
		w.rc = http.NewResponseController(w.ResponseWriter)
	}
	// The deadline is the connection's, and net/http does not reset it
	// for the next request when the server has no write timeout: each
	// write clears what it set. What stays buffered after the last one is
	// at most a buffer's worth, and the client has taken all before it.
	defer w.rc.SetWriteDeadline(time.Time{})
	written := 0
	for len(b) > 0 {
		chunk := b[:min(len(b), writeChunk)]
		_ = w.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
		n, err := w.ResponseWriter.Write(chunk)
		written += n
		if err != nil {
			return written, err
		}
		b = b[n:]
	}
	return written, nil
}

// FlushError flushes under the same deadline as a write.
func (w *statusWriter) FlushError() error {
	if w.rc == nil {
		w.rc = http.NewResponseController(w.ResponseWriter)
	}
	if !w.bounded {
		return w.rc.Flush()
	}
	defer w.rc.SetWriteDeadline(time.Time{})
	_ = w.rc.SetWriteDeadline(time.Now().Add(writeTimeout))
	return w.rc.Flush()
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController reach Flush and deadlines.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
