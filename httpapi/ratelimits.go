package httpapi

import (
	"strings"
	"time"
)

// The request limits of an application and of a user (--app-rate,
// --user-rate) are the cluster's: each node keeps its own buckets, tells
// the others every few hundred milliseconds how many requests it let
// through per application and per user, and takes what they let through
// from its own buckets (cluster/ratelimits.go; cluster/DESIGN.md, "Request
// limits shared by the cluster"). Nothing here waits on another node.

// Key prefixes of the shared buckets (auth.go).
const (
	appKeyPrefix  = "a:"
	userKeyPrefix = "u:"
)

// TakeAdmitted returns the requests this node let through since the last
// call, per application id and per user id, and counts them from now on
// while count is true (the node has others to tell). A lone node calls it
// with false and counts nothing.
func (s *Server) TakeAdmitted(count bool) (apps, users map[string]int) {
	for key, n := range s.limits.takeAdmitted(count) {
		switch {
		case strings.HasPrefix(key, appKeyPrefix):
			if apps == nil {
				apps = map[string]int{}
			}
			apps[key[len(appKeyPrefix):]] = n
		case strings.HasPrefix(key, userKeyPrefix):
			if users == nil {
				users = map[string]int{}
			}
			users[key[len(userKeyPrefix):]] = n
		}
	}
	return apps, users
}

// ChargeAdmitted takes from this node's buckets the requests another node
// let through, under this node's own --app-rate and --user-rate. A bucket
// may fall into debt down to debt bursts (one per other node), so that
// what every node let through on its own full bucket before it heard of
// the others is paid back.
func (s *Server) ChargeAdmitted(apps, users map[string]int, debt int) {
	now := time.Now()
	for id, n := range apps {
		s.limits.chargeN(appKeyPrefix+id, s.opts.AppRate, s.opts.AppBurst, n, debt, now)
	}
	for id, n := range users {
		s.limits.chargeN(userKeyPrefix+id, s.opts.UserRate, s.opts.UserBurst, n, debt, now)
	}
}
