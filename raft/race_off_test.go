//go:build !race

package raft

const allocSlack = 1
