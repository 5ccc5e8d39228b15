package cluster

import (
	"slices"
	"strings"
	"testing"

	"github.com/herald-notify/herald/raft"
)

// decide is the whole of --bootstrap-expect's safety: a node bootstraps only
// the list every one of the expected nodes proposes, joins a cluster that
// has a leader, and never forms a cluster beside one that exists.
func TestDecide(t *testing.T) {
	a := raft.NodeRecord{ID: "a", RaftAddr: "127.0.0.1:1", HTTPAddr: "127.0.0.1:11"}
	b := raft.NodeRecord{ID: "b", RaftAddr: "127.0.0.1:2", HTTPAddr: "127.0.0.1:12"}
	c := raft.NodeRecord{ID: "c", RaftAddr: "127.0.0.1:3", HTTPAddr: "127.0.0.1:13"}
	d := raft.NodeRecord{ID: "d", RaftAddr: "127.0.0.1:4", HTTPAddr: "127.0.0.1:14"}
	conf := func(rs ...raft.NodeRecord) []raft.NodeRecord {
		out := make([]raft.NodeRecord, len(rs))
		for i, r := range rs {
			out[i] = raft.NodeRecord{ID: r.ID, RaftAddr: r.RaftAddr}
		}
		return out
	}
	abc := conf(a, b, c)
	fresh := func(r raft.NodeRecord, proposal []raft.NodeRecord) hello {
		return hello{ID: r.ID, HTTPAddr: r.HTTPAddr, RaftAddr: r.RaftAddr, BootstrapExpect: 3, Proposal: proposal}
	}
	restored := func(h hello, cluster string) hello {
		h.ClusterID = cluster
		return h
	}
	member := func(r raft.NodeRecord, leader string, servers []raft.NodeRecord) hello {
		h := fresh(r, nil)
		h.LeaderID, h.Servers = leader, servers
		return h
	}
	for _, tc := range []struct {
		name     string
		self     raft.NodeRecord
		own      string
		peers    []hello
		mine     []raft.NodeRecord
		want     decisionKind
		proposal []raft.NodeRecord
		via      string
		errHas   string
		emptied  bool
	}{
		{name: "too few", self: a, peers: []hello{fresh(b, nil)}, want: wait},
		{name: "all restored from one backup", self: b, own: "R",
			peers: []hello{restored(fresh(a, abc), "R"), restored(fresh(c, abc), "R")}, want: bootstrap, proposal: abc},
		{name: "one node not restored", self: a, own: "R", peers: []hello{restored(fresh(b, abc), "R"), fresh(c, abc)},
			want: wait, errHas: "no restored data"},
		{name: "this node not restored", self: a, peers: []hello{restored(fresh(b, abc), "R"), restored(fresh(c, abc), "R")},
			want: wait, errHas: "the data of cluster R"},
		{name: "restored from two backups", self: a, own: "R", peers: []hello{restored(fresh(b, abc), "R"), restored(fresh(c, abc), "S")},
			want: wait, errHas: "cluster S"},
		{name: "all here, no agreement yet", self: a, peers: []hello{fresh(b, nil), fresh(c, abc)},
			want: wait, proposal: abc},
		{name: "all agree", self: b, peers: []hello{fresh(a, abc), fresh(c, abc)}, want: bootstrap, proposal: abc},
		{name: "self listed under another name", self: b, peers: []hello{fresh(a, abc), fresh(b, abc), fresh(c, abc)},
			want: bootstrap, proposal: abc},
		{name: "a peer proposes other members", self: a, peers: []hello{fresh(b, abc), fresh(c, conf(b, c, d))},
			want: wait, proposal: abc},
		{name: "too many", self: a, peers: []hello{fresh(b, nil), fresh(c, nil), fresh(d, nil)}, want: wait},
		{name: "another expect", self: a, peers: []hello{fresh(b, nil), {ID: "c", RaftAddr: c.RaftAddr, BootstrapExpect: 5}},
			want: wait},
		{name: "same id elsewhere", self: a, peers: []hello{fresh(raft.NodeRecord{ID: "a", RaftAddr: "127.0.0.1:9"}, nil)},
			want: fail, errHas: "--node-id"},
		{name: "a peer bootstrapped what this node proposed", self: c, mine: abc,
			peers: []hello{member(a, "", abc), fresh(b, abc)}, want: bootstrap, proposal: abc},
		// A voter without state that did not just form with the others:
		// its data was lost, and it says so.
		{name: "member without a proposal waits for the leader", self: c,
			peers: []hello{member(a, "a", abc), member(b, "a", abc)}, want: wait, emptied: true},
		{name: "a cluster with a leader", self: d, peers: []hello{member(a, "a", abc), member(b, "a", abc)},
			want: joinVia, via: a.HTTPAddr},
		{name: "a cluster without a leader", self: d, peers: []hello{member(a, "", abc), fresh(b, nil), fresh(c, nil)},
			want: wait},
		{name: "a member at a new address joins", self: raft.NodeRecord{ID: "c", RaftAddr: "127.0.0.1:33"},
			peers: []hello{member(a, "b", abc), member(b, "b", abc)}, want: joinVia, via: a.HTTPAddr},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decide(tc.self, tc.own, 3, tc.peers, tc.mine)
			if got.kind != tc.want || got.via != tc.via || !slices.Equal(got.proposal, tc.proposal) || got.emptied != tc.emptied {
				t.Fatalf("decide = %+v, want kind %d via %q proposal %v", got, tc.want, tc.via, tc.proposal)
			}
			if tc.want == fail && (got.err == nil || !strings.Contains(got.err.Error(), tc.errHas)) {
				t.Fatalf("error %v, want one naming %s", got.err, tc.errHas)
			}
			if tc.want == wait && got.why == "" {
				t.Fatal("a wait that does not say what for")
			}
			if tc.want == wait && tc.errHas != "" && (!got.misconfigured || !strings.Contains(got.why, tc.errHas)) {
				t.Fatalf("wait %q (misconfigured %v), want an error naming %s", got.why, got.misconfigured, tc.errHas)
			}
		})
	}
}

// A node missing from its own --join is warned only when the answers say
// the others do not know it either: not when one of them is itself under
// another name, nor when a cluster has formed that it can join.
func TestUnlistedAloneOnlyWhenNoAnswerKnowsTheNode(t *testing.T) {
	self := raft.NodeRecord{ID: "n3", HTTPAddr: "127.0.0.1:8770", RaftAddr: "127.0.0.1:8771"}
	other := hello{ID: "n1", HTTPAddr: "127.0.0.1:8750", RaftAddr: "127.0.0.1:8751"}
	formed := other
	formed.Servers = []raft.NodeRecord{{ID: "n1"}, {ID: "n2"}}
	itself := hello{ID: "n3", HTTPAddr: "localhost:8770", RaftAddr: "127.0.0.1:8771"}
	for _, c := range []struct {
		name  string
		peers []hello
		want  bool
	}{
		{"nobody answered", nil, true},
		{"others forming without it", []hello{other}, true},
		{"a cluster to join", []hello{other, formed}, false},
		{"itself under another name", []hello{other, itself}, false},
	} {
		if got := unlistedAlone(self, c.peers); got != c.want {
			t.Errorf("%s: unlistedAlone = %v, want %v", c.name, got, c.want)
		}
	}
}

// A node restored from a backup neither joins nor waits for a node that
// holds another cluster's data (one left out of the restore, which lists
// this node in its old configuration), or Raft state without an identity
// (one left out of a restore of a cluster that never had one); a node
// without an identity goes with any.
func TestSameHistory(t *testing.T) {
	peers := []hello{{ID: "kept", ClusterID: "old"}, {ID: "restored", ClusterID: "new"}, {ID: "fresh"},
		{ID: "nameless", Servers: []raft.NodeRecord{{ID: "nameless"}}}}
	ids := func(hs []hello) []string {
		var out []string
		for _, h := range hs {
			out = append(out, h.ID)
		}
		return out
	}
	same, others := sameHistory("new", peers)
	if !slices.Equal(ids(same), []string{"restored", "fresh"}) || !slices.Equal(ids(others), []string{"kept", "nameless"}) {
		t.Fatalf("restored node: same %v, others %v", ids(same), ids(others))
	}
	same, others = sameHistory("", peers)
	if len(same) != 4 || len(others) != 0 {
		t.Fatalf("node without an identity: same %v, others %v", ids(same), ids(others))
	}
}
