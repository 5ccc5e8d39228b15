package raft

import (
	"fmt"
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

// A filter that few records match pages through the log a bounded stretch
// at a time: a page ends, even empty, with a Next once it has read
// AuditScanBound records, and following Next still finds every match once.
func TestAuditLogFilteredPagesReadABoundedStretch(t *testing.T) {
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	old := AuditScanBound
	AuditScanBound = 10
	defer func() { AuditScanBound = old }()
	start := time.Now().Add(-time.Hour)
	var recs []resource.AuditRecord
	for i := 0; i < 45; i++ {
		at := start.Add(time.Duration(i) * time.Second)
		action := "signIn"
		if i == 3 || i == 40 {
			action = "user.delete"
		}
		recs = append(recs, resource.AuditRecord{ID: resource.AuditID(at), DateTime: resource.At(at), Action: action,
			Target: "t", Result: resource.AuditSuccess})
	}
	f.ApplyBatch(entriesOf(t, &Command{Op: OpAudit, Now: time.Now().UnixNano(), Audit: recs}))
	s := &Store{db: db}

	keep := func(r *resource.AuditRecord) bool { return r.Action == "user.delete" }
	var found []string
	pages := 0
	after := ""
	for {
		p, err := s.AuditLog(AuditQuery{After: after, Limit: 5, Keep: keep})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, r := range p.Items {
			found = append(found, r.ID)
		}
		if p.Next == "" {
			break
		}
		if p.Next == after || pages > 20 {
			t.Fatalf("page %d does not move on: Next %q", pages, p.Next)
		}
		after = p.Next
	}
	if len(found) != 2 || found[0] != recs[40].ID || found[1] != recs[3].ID {
		t.Fatalf("matches %v, want %s then %s", found, recs[40].ID, recs[3].ID)
	}
	if pages < 45/AuditScanBound {
		t.Fatalf("%d pages over 45 records at %d a page: a page read more than the bound", pages, AuditScanBound)
	}

	// Unfiltered, full pages continue after their last record as before.
	p, err := s.AuditLog(AuditQuery{Limit: 7})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Items) != 7 || p.Next != p.Items[6].ID {
		t.Fatalf("unfiltered page: %d items, Next %q", len(p.Items), p.Next)
	}
}

func BenchmarkAuditLogFilteredPage(b *testing.B) {
	f, db := openFSM(b, b.TempDir())
	defer db.Close()
	start := time.Now().Add(-time.Hour)
	const n = 60000
	for i := 0; i < n; i += 1000 {
		recs := make([]resource.AuditRecord, 0, 1000)
		for j := i; j < i+1000; j++ {
			at := start.Add(time.Duration(j) * time.Millisecond)
			recs = append(recs, resource.AuditRecord{ID: resource.AuditID(at), DateTime: resource.At(at), Action: "user.create",
				Actor: resource.AuditActor{Type: "user", Name: "admin"}, Target: fmt.Sprintf("u%05d", j), Result: resource.AuditSuccess,
				Detail: "roles user, accountEnabled true"})
		}
		f.ApplyBatch([]*hraft.Log{entry(b, uint64(i/1000+1), &Command{Op: OpAudit, Now: time.Now().UnixNano(), Audit: recs})})
	}
	s := &Store{db: db}
	keep := func(r *resource.AuditRecord) bool { return r.Action == "user.delete" }
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := s.AuditLog(AuditQuery{Limit: 50, Keep: keep}); err != nil {
			b.Fatal(err)
		}
	}
}
