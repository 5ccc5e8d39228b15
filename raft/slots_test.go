package raft

import (
	"fmt"
	"testing"
)

func counts(table []string) map[string]int {
	c := map[string]int{}
	for _, id := range table {
		c[id]++
	}
	return c
}

func moved(a, b []string) int {
	n := 0
	for i := range a {
		if a[i] != b[i] {
			n++
		}
	}
	return n
}

func checkEven(t *testing.T, table []string, nodes ...string) {
	t.Helper()
	c := counts(table)
	if len(c) != len(nodes) {
		t.Fatalf("owners %v, want %v", c, nodes)
	}
	lo, hi := SlotCount/len(nodes), (SlotCount+len(nodes)-1)/len(nodes)
	for _, id := range nodes {
		if c[id] < lo || c[id] > hi {
			t.Fatalf("%s owns %d slots, want %d..%d (%v)", id, c[id], lo, hi, c)
		}
	}
}

// Slots are shared evenly, and a membership change moves only the slots it
// must: a new node takes its share and nothing else moves; a departed node's
// slots alone are spread over the rest; the same inputs give the same table.
func TestRebalance(t *testing.T) {
	one := Rebalance(nil, []string{"a"})
	checkEven(t, one, "a")
	three := Rebalance(one, []string{"c", "a", "b"})
	checkEven(t, three, "a", "b", "c")
	if m := moved(one, three); m != SlotCount-SlotCount/3-1 {
		t.Errorf("1→3 nodes moved %d slots", m)
	}
	if fmt.Sprint(Rebalance(one, []string{"a", "b", "c"})) != fmt.Sprint(three) {
		t.Error("not deterministic")
	}
	if m := moved(three, Rebalance(three, []string{"a", "b", "c"})); m != 0 {
		t.Errorf("an unchanged membership moved %d slots", m)
	}
	four := Rebalance(three, []string{"a", "b", "c", "d"})
	checkEven(t, four, "a", "b", "c", "d")
	if m := moved(three, four); m != SlotCount/4 {
		t.Errorf("3→4 nodes moved %d slots, want %d", m, SlotCount/4)
	}
	two := Rebalance(four, []string{"a", "c"})
	checkEven(t, two, "a", "c")
	if m := moved(four, two); m != SlotCount/2 {
		t.Errorf("removing two of four moved %d slots, want %d", m, SlotCount/2)
	}
	for i := range four {
		if (four[i] == "a" || four[i] == "c") && two[i] != four[i] {
			t.Fatalf("slot %d moved from %s though its owner stayed", i, four[i])
		}
	}
	if SlotOf("user-1") != SlotOf("user-1") || SlotOf("user-1") >= SlotCount {
		t.Error("SlotOf")
	}
}

// A voter found down loses exactly its slots, shared evenly by the others,
// and gets an even share back when it returns, each way with the fewest
// moves; the leader is never counted down.
func TestRebalanceOverReachableVoters(t *testing.T) {
	voters := []string{"a", "b", "c"}
	all := Rebalance(nil, voters)
	checkEven(t, all, "a", "b", "c")

	live := Reachable(voters, "a", map[string]bool{"c": true})
	if fmt.Sprint(live) != "[a b]" {
		t.Fatalf("reachable %v, want [a b]", live)
	}
	without := Rebalance(all, live)
	checkEven(t, without, "a", "b")
	if m, had := moved(all, without), counts(all)["c"]; m != had {
		t.Fatalf("%d slots moved when c went down, want c's %d", m, had)
	}
	for i := range all {
		if all[i] != "c" && without[i] != all[i] {
			t.Fatalf("slot %d moved from %s, which stayed up", i, all[i])
		}
	}

	back := Rebalance(without, Reachable(voters, "a", nil))
	checkEven(t, back, "a", "b", "c")
	if m := moved(without, back); m != counts(back)["c"] {
		t.Fatalf("%d slots moved when c returned, want only c's %d", m, counts(back)["c"])
	}

	if got := Reachable(voters, "a", map[string]bool{"a": true, "b": true}); fmt.Sprint(got) != "[a c]" {
		t.Fatalf("the leader counted down: %v", got)
	}
	if got := Reachable([]string{"b"}, "a", map[string]bool{"b": true}); fmt.Sprint(got) != "[b]" {
		t.Fatalf("nothing reachable: %v, want the voters unchanged", got)
	}
}
