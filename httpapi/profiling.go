package httpapi

import (
	"math"
	"net/http"
	"net/http/pprof"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/herald-notify/herald/resource"
)

// Go's runtime profiles for an operator who wants to see where a node's
// time goes (docs/operations.md, "Profiling a node"): served on the
// metrics listener only, to the same callers as its /metrics, and only
// with --profiling. They are read with `go tool pprof` and `go tool trace`.
//
// The command line (/debug/pprof/cmdline) is not served: an operator may
// have given a secret as a flag.

// Sampling rates once profiling is on: a block profile sample per 100 µs
// spent blocked and one mutex contention in a hundred, so that the block
// and mutex profiles hold something without a node paying for every event.
const (
	blockProfileRate     = 100_000
	mutexProfileFraction = 100
)

// EnableProfiling starts sampling blocking and lock contention for the
// block and mutex profiles; the other profiles need nothing started.
func EnableProfiling() {
	runtime.SetBlockProfileRate(blockProfileRate)
	runtime.SetMutexProfileFraction(mutexProfileFraction)
}

// routeProfiles adds /debug/pprof/ to the metrics listener's mux.
func (s *Server) routeProfiles(mux *http.ServeMux) {
	serve := func(route string, h handlerFunc) {
		mux.Handle(route, s.wrap(route, func(w http.ResponseWriter, r *http.Request) error {
			if err := s.privateMetricsAccess(r); err != nil {
				return err
			}
			if err := checkSeconds(r); err != nil {
				return err
			}
			return h(w, r)
		}))
	}
	std := func(h http.HandlerFunc) handlerFunc {
		return func(w http.ResponseWriter, r *http.Request) error {
			h(w, r)
			return nil
		}
	}
	serve("GET /debug/pprof/profile", oneAtATime(&cpuProfiling, "A CPU profile", std(pprof.Profile)))
	serve("GET /debug/pprof/trace", oneAtATime(&tracing, "An execution trace", std(pprof.Trace)))
	serve("GET /debug/pprof/cmdline", func(w http.ResponseWriter, r *http.Request) error {
		return resource.Errorf(resource.CodeNotFound, "The command line is not served: it may hold secrets.")
	})
	// The index page, and each of runtime/pprof's profiles by name.
	serve("GET /debug/pprof/", func(w http.ResponseWriter, r *http.Request) error {
		if name := strings.TrimPrefix(r.URL.Path, "/debug/pprof/"); name != "" && !knownProfile(name) {
			return resource.Errorf(resource.CodeNotFound, "There is no profile %q; /debug/pprof/ lists them.", name)
		}
		pprof.Index(w, r)
		return nil
	})
	mux.Handle("/debug/pprof/", s.wrap("405", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Allow", "GET, HEAD")
		return resource.Errorf(resource.CodeMethodNotAllowed, "%s is not allowed here; use GET, HEAD.", r.Method)
	}))
}

// The process takes one CPU profile and one execution trace at a time.
var cpuProfiling, tracing atomic.Bool

// oneAtATime answers 503 while another request takes what h takes.
func oneAtATime(busy *atomic.Bool, what string, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if !busy.CompareAndSwap(false, true) {
			return unavailable(what+" is being taken already; ask again once it is done.", 5*time.Second)
		}
		defer busy.Store(false)
		return h(w, r)
	}
}

// MaxProfileSeconds is the longest profile served; the metrics listener's
// write timeout leaves it room, and the bench asks for no more.
const MaxProfileSeconds = 600

// checkSeconds refuses a seconds parameter that is not a number of
// seconds from 1 to MaxProfileSeconds (a trace takes fractions), before
// net/http/pprof answers it in a shape of its own.
func checkSeconds(r *http.Request) error {
	v := r.URL.Query().Get("seconds")
	if v == "" {
		return nil
	}
	trace := strings.HasSuffix(r.URL.Path, "/trace")
	n, err := strconv.ParseFloat(v, 64)
	// Written so that NaN fails it.
	inRange := n > 0 && n <= MaxProfileSeconds && (trace || (n >= 1 && n == math.Trunc(n)))
	if err != nil || !inRange {
		return resource.Invalid("seconds", "seconds is how long the profile covers: a whole number from 1 to %d (a trace takes fractions).", MaxProfileSeconds)
	}
	return nil
}

func knownProfile(name string) bool {
	switch name {
	case "heap", "allocs", "goroutine", "block", "mutex", "threadcreate":
		return true
	}
	return false
}
