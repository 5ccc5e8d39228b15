package raft

import (
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"

	"github.com/herald-notify/herald/resource"
)

// Counts of failed sign-ins proposed by several nodes, or by one node in
// several flushes, for the same name, address and minute add up in one
// record; a record that rides on a failing command is kept as a failure
// with the reason, and the command's own change is not made.
func TestAuditAggregatesMergeAndFailuresAreRecorded(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	minute := time.Now().Truncate(time.Minute)
	agg := func(n int) resource.AuditRecord {
		return resource.AuditRecord{ID: resource.AggregateAuditID(minute, "signInFailure", "user\x00eve", "192.0.2.7"),
			DateTime: resource.At(minute), Actor: resource.AuditActor{Type: "user", Name: "eve"}, Action: "signInFailure",
			Target: "eve", ClientAddress: "192.0.2.7", Result: resource.AuditFailure, Count: n}
	}
	now := time.Now()
	del := resource.AuditRecord{ID: resource.AuditID(now), DateTime: resource.At(now), Action: "user.delete",
		Target: "ghost", Result: resource.AuditSuccess}
	f.ApplyBatch(entriesOf(t,
		&Command{Op: OpAudit, Now: now.UnixNano(), Audit: []resource.AuditRecord{agg(2)}},
		&Command{Op: OpAudit, Now: now.UnixNano(), Audit: []resource.AuditRecord{agg(3)}},
		&Command{Op: OpDeleteUser, Now: now.UnixNano(), UserID: "ghost", Audit: []resource.AuditRecord{del}},
	))
	s := &Store{db: db}
	page, err := s.AuditLog(AuditQuery{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Items) != 2 {
		t.Fatalf("records: %+v", page.Items)
	}
	byAction := map[string]resource.AuditRecord{}
	for _, r := range page.Items {
		byAction[r.Action] = r
	}
	if r := byAction["signInFailure"]; r.Count != 5 || r.Detail == "" {
		t.Errorf("merged aggregate: %+v", r)
	}
	if r := byAction["user.delete"]; r.Result != resource.AuditFailure || r.Detail == "" {
		t.Errorf("the record of a failed delete: %+v", r)
	}
}

func entriesOf(t *testing.T, cmds ...*Command) []*hraft.Log {
	t.Helper()
	out := make([]*hraft.Log, len(cmds))
	for i, c := range cmds {
		out[i] = entry(t, uint64(i+1), c)
	}
	return out
}
