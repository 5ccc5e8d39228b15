package httpapi

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opts.Ops.Ready(ctx); err != nil {
		return unavailable(fmt.Sprintf("Not ready: %v.", err), time.Second)
	}
	body := map[string]string{"status": "ready"}
	for k, v := range s.opts.Ops.ReadyNotes() {
		body[k] = v
	}
	writeJSON(w, http.StatusOK, body)
	return nil
}

// metricsHandler serves the Prometheus text format to callers that open
// lets through.
func (s *Server) metricsHandler(open func(r *http.Request) error) handlerFunc {
	g := s.opts.Gatherer
	if g == nil {
		g = prometheus.DefaultGatherer
	}
	h := promhttp.HandlerFor(g, promhttp.HandlerOpts{})
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := open(r); err != nil {
			return err
		}
		h.ServeHTTP(w, r)
		return nil
	}
}

// publicMetricsAccess guards /metrics on the public listener: the figures
// tell an outsider how busy the server is, who its peers are and which
// version runs, so they take an admin's token (the console's dashboard
// reads them with the admin's session), or the scrape token unless
// scrapers have a listener of their own.
func (s *Server) publicMetricsAccess(r *http.Request) error {
	if s.scrapeTokenMatches(r) {
		if s.opts.MetricsElsewhere {
			return denied("The metrics token is for the metrics listener (--metrics-addr); here /metrics takes an admin's token.")
		}
		return nil
	}
	p, err := s.authenticate(r, false)
	if err != nil {
		return err
	}
	if !p.isAdmin() {
		return denied("/metrics needs an admin's token or the metrics token (--metrics-token).")
	}
	return nil
}

// privateMetricsAccess guards the separate metrics listener, which is as
// private as the network it is bound to: open unless a scrape token is set.
func (s *Server) privateMetricsAccess(r *http.Request) error {
	if s.opts.MetricsToken == "" || s.scrapeTokenMatches(r) {
		return nil
	}
	if bearer(r, false) == "" {
		return unauthenticated("/metrics needs the metrics token: send Authorization: Bearer <token>.")
	}
	return unauthenticated("The metrics token is wrong.")
}

func (s *Server) scrapeTokenMatches(r *http.Request) bool {
	want := s.opts.MetricsToken
	got := bearer(r, false)
	return want != "" && got != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// MetricsHandler serves /metrics on a listener of its own (Options.
// MetricsElsewhere), and with Options.Profiling Go's profiles
// (profiling.go), with the contract's errors for anything else.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.wrap("GET /metrics", s.metricsHandler(s.privateMetricsAccess)))
	mux.Handle("/metrics", s.wrap("405", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", "GET, HEAD")
		return resource.Errorf(resource.CodeMethodNotAllowed, "%s is not allowed here; use GET, HEAD.", r.Method)
	}))
	only := "/metrics only"
	if s.opts.Profiling {
		s.routeProfiles(mux)
		only = "/metrics and /debug/pprof/ only"
	}
	mux.Handle("/", s.wrap("404", func(w http.ResponseWriter, r *http.Request) error {
		return resource.Errorf(resource.CodeNotFound, "There is no resource at %s; this listener serves %s.", r.URL.Path, only)
	}))
	return mux
}

func (s *Server) cluster(w http.ResponseWriter, r *http.Request, p *principal) error {
	writeJSON(w, http.StatusOK, s.opts.Ops.Cluster())
	return nil
}

func (s *Server) addNode(w http.ResponseWriter, r *http.Request, p *principal) error {
	var body struct {
		ID       string `json:"id"`
		RaftAddr string `json:"raftAddr"`
		HTTPAddr string `json:"httpAddr"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.ID == "" || body.RaftAddr == "" || body.HTTPAddr == "" {
		return resource.Invalid("", "A node needs id, raftAddr and httpAddr.")
	}
	rec := s.record(r, actorOf(p), actNodeAdd, clip(body.ID), "raftAddr "+clip(body.RaftAddr)+", httpAddr "+clip(body.HTTPAddr))
	err := s.opts.Ops.AddNode(r.Context(), body.ID, body.RaftAddr, body.HTTPAddr)
	s.auditAlone(r, rec, err) // audit.go: membership changes outside the FSM's commands
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusCreated, body)
	return nil
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request, p *principal) error {
	rec := s.record(r, actorOf(p), actNodeRemove, clip(r.PathValue("id")), "")
	err := s.opts.Ops.RemoveNode(r.Context(), r.PathValue("id"))
	s.auditAlone(r, rec, err)
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) backup(w http.ResponseWriter, r *http.Request, p *principal) error {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition",
		`attachment; filename="herald-`+time.Now().UTC().Format("20060102T150405Z")+`.backup"`)
	if r.Method == http.MethodHead {
		// The mux answers HEAD with the GET handler: a HEAD took, and
		// audited, a whole backup that nobody received.
		return nil
	}
	// A backup is read from this node's replica: a follower may not have
	// applied a write the cluster acknowledged before the backup was asked
	// for. It runs the barrier a strong read does, unless asked for what
	// the node holds (ConsistencyLevel: eventual: a node that has lost its
	// quorum, whose state is the best left).
	if !caughtUp(r) && !strings.EqualFold(r.Header.Get(consistencyHeader), "eventual") {
		if err := s.state.Barrier(r.Context()); err != nil {
			s.log.Debug("backup: barrier failed", "error", err)
			return unavailable("This node could not confirm that it holds every write the cluster has acknowledged, "+
				"so a backup of it could miss some; retry, or back up another node. Of a node that has lost its "+
				"cluster, take what it holds with herald backup --stale (ConsistencyLevel: eventual).", time.Second)
		}
	}
	// Recorded before it streams: a backup holds every password hash and
	// token hash, so who took one matters even if the download breaks.
	s.auditAlone(r, s.record(r, actorOf(p), actBackup, "the whole state", ""), nil)
	err := s.opts.Ops.Backup(r.Context(), w)
	if errors.Is(err, raft.ErrEntryUnderWay) { // before the first byte
		err = unavailable("A large write (such as deleting a user with many notifications) is still being applied; "+
			"a backup waits for it to end, and it did not end in time. Retry after the time in Retry-After.", 10*time.Second)
	}
	if err != nil {
		// Before the first byte wrap answers with the error; after it the
		// status line is gone, wrap logs it, and a truncated body fails
		// the restore's checksum, so the damage cannot go unnoticed.
		w.Header().Del("Content-Disposition")
	}
	return err
}
