package raft

import (
	"encoding/json"
	"hash/fnv"
	"slices"
	"sort"
)

// SlotCount is the number of user partitions (DESIGN.md, Partitioning).
const SlotCount = 1024

// SlotOf is the slot of a user: FNV-1a of the id, mod SlotCount. Every node
// computes the same slot, so any node can say who owns a user.
func SlotOf(userID string) int {
	h := fnv.New64a()
	h.Write([]byte(userID))
	return int(h.Sum64() % SlotCount)
}

// Slots returns the slot table, or nil before the leader first wrote one.
// The table is shared: callers must not modify it.
func (s *Store) Slots() ([]string, error) {
	t, ok, err := cached(s.cache, slotTables, "", func() (*[]string, bool, error) {
		raw, found, err := s.getString([]byte(keySlots))
		if err != nil || !found {
			return nil, false, err
		}
		var table []string
		if err := json.Unmarshal([]byte(raw), &table); err != nil || len(table) != SlotCount {
			return nil, false, err
		}
		return &table, true, nil
	}, func(t *[]string) *[]string { return t })
	if err != nil || !ok {
		return nil, err
	}
	return *t, nil
}

// Rebalance assigns the slots evenly to nodes (each gets ⌊n/k⌋ or ⌈n/k⌉),
// moving as few as possible: a slot stays with its owner while the owner is
// still a node and under its share, and only the rest move, to the nodes
// below their share. The nodes that already hold the most get the larger
// shares, which is what keeps the moves minimal. It is a pure function of
// its inputs, computed by the leader; the table it returns goes through Raft.
func Rebalance(table []string, nodes []string) []string {
	if len(nodes) == 0 {
		return table
	}
	nodes = slices.Clone(nodes)
	slices.Sort(nodes)
	held := map[string]int{}
	if len(table) == SlotCount {
		for _, id := range table {
			held[id]++
		}
	}
	byHeld := slices.Clone(nodes)
	sort.SliceStable(byHeld, func(i, j int) bool { return held[byHeld[i]] > held[byHeld[j]] })
	quota := map[string]int{}
	base, extra := SlotCount/len(nodes), SlotCount%len(nodes)
	for i, id := range byHeld {
		quota[id] = base
		if i < extra {
			quota[id]++
		}
	}
	out := make([]string, SlotCount)
	kept := map[string]int{}
	for i := range out {
		if len(table) == SlotCount {
			if id := table[i]; kept[id] < quota[id] {
				out[i] = id
				kept[id]++
			}
		}
	}
	next := 0
	for i := range out {
		if out[i] != "" {
			continue
		}
		for kept[nodes[next]] >= quota[nodes[next]] {
			next++
		}
		out[i] = nodes[next]
		kept[nodes[next]]++
	}
	return out
}

// Reachable is the set Rebalance should spread the slots over: the voters
// minus those the leader has found down, so that a stopped node's users are
// served by the survivors until it returns. The leader is always kept (it is
// the one deciding, so it is up). If nothing would remain, the voters are
// returned unchanged rather than an empty set, which Rebalance would ignore
// anyway. Pure: the leader computes it, the table it leads to goes through
// Raft.
func Reachable(voters []string, leader string, down map[string]bool) []string {
	var out []string
	for _, id := range voters {
		if id == leader || !down[id] {
			out = append(out, id)
		}
	}
	if len(out) == 0 {
		return voters
	}
	return out
}
