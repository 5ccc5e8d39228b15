//go:build race

package raft

// allocSlack widens allocation budgets under the race detector, which
// allocates on its own (CI runs with -race); a regression of one
// allocation per listener or per field still shows.
const allocSlack = 2
