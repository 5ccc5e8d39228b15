package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/herald-notify/herald/internal/logthrottle"
	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// Sign-in throttling shared by the cluster (DESIGN.md, Sign-in throttling).
// The leader's counters are the cluster's: a follower asks the leader about
// every password sign-in before it runs the hash, and tells it of every one
// that failed. The counters live in the leader's memory, not in the Raft
// log: an attacker's guesses must not become disk writes on every node.

const (
	signInPath = "/internal/cluster/signin"
	// signInAskTimeout bounds a follower's question to the leader, an
	// election included; past it the sign-in is refused (fail closed).
	signInAskTimeout = 3 * time.Second
)

// ErrSignInUnshared is what SignInLimits returns when the leader could not
// be asked: the caller refuses the sign-in with 503 (a token could not be
// issued without a leader anyway).
var ErrSignInUnshared = errors.New("the cluster's sign-in counters could not be asked")

// SignInAttempt is one question to the leader's counters: may an attempt
// from Addr on account User go ahead (and count it), or, with Failed, count
// one that failed.
type SignInAttempt struct {
	Addr   string `json:"addr"`
	User   string `json:"user"`
	Failed bool   `json:"failed,omitempty"`
}

// signInAnswer is the leader's answer: how long the attempt must wait; 0
// lets it go ahead.
type signInAnswer struct {
	WaitMillis int64 `json:"waitMillis"`
}

// SignInCounters are a node's own sign-in counters (httpapi's limiter).
type SignInCounters func(a SignInAttempt, now time.Time) time.Duration

// ServeSignInLimits makes counters the cluster's while this node leads;
// until it is called the node answers followers 503, and they refuse.
func (c *Cluster) ServeSignInLimits(counters SignInCounters) { c.signIn.Store(&counters) }

// SignInLimits asks the cluster's counters about a. On the leader it
// reports here: the caller's own counters are the cluster's. A follower
// asks the leader, across an election while signInAskTimeout allows, and
// gets ErrSignInUnshared if it could not.
func (c *Cluster) SignInLimits(ctx context.Context, a SignInAttempt) (wait time.Duration, here bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, signInAskTimeout)
	defer cancel()
	for {
		if c.store.IsLeader() {
			return 0, true, nil
		}
		var out signInAnswer
		err = c.callLeader(ctx, signInPath, a, &out)
		if err == nil {
			c.signInLog.Recover("leader", "sign-in counters: the leader answers again")
			return time.Duration(out.WaitMillis) * time.Millisecond, false, nil
		}
		if errors.Is(err, raft.ErrNotLeader) && c.waitLeaderChange(ctx) == nil {
			continue
		}
		if pe := (*peerError)(nil); errors.As(err, &pe) && pe.status == http.StatusNotFound {
			// A leader of the previous version, which has no shared
			// counters: this node's own decide, as they did before.
			c.signInLog.Fail(logthrottle.Key{Subject: "leader", Kind: "sign-in-old"}, slog.LevelInfo,
				"sign-in counters: the leader does not share them yet (an older version); this node's own apply")
			return 0, true, nil
		}
		c.signInLog.Fail(logthrottle.Key{Subject: "leader", Kind: "sign-in"}, slog.LevelWarn,
			"sign-in counters: the leader could not be asked; password sign-ins through this node get 503",
			slog.String("error", err.Error()))
		return 0, false, fmt.Errorf("%w: %w", ErrSignInUnshared, err)
	}
}

// serveSignIn is the leader's side.
func (c *Cluster) serveSignIn(_ context.Context, _ *http.Request, body []byte) (any, error) {
	counters := c.signIn.Load()
	if !c.store.IsLeader() || counters == nil {
		return nil, raft.ErrNotLeader
	}
	var a SignInAttempt
	if err := json.Unmarshal(body, &a); err != nil || a.Addr == "" || a.User == "" {
		return nil, resource.Errorf(resource.CodeInvalidRequest, "sign-in attempt: %v", err)
	}
	wait := (*counters)(a, time.Now())
	return signInAnswer{WaitMillis: wait.Milliseconds() + min(1, int64(wait%time.Millisecond))}, nil
}
