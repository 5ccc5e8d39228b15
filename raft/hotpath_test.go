package raft

import (
	"testing"
	"time"

	hraft "github.com/hashicorp/raft"
)

// sendEntries makes n Raft entries of per sends each to one user, as the
// group commit would build them under load.
func sendEntries(tb testing.TB, first uint64, n, per int) []*hraft.Log {
	now := time.Now()
	logs := make([]*hraft.Log, n)
	for i := range logs {
		cmds := make([]*Command, per)
		for j := range cmds {
			cmds[j] = sendCmd("u1", "a1", "", now, now.Add(time.Hour))
		}
		logs[i] = entry(tb, first+uint64(i), cmds...)
	}
	return logs
}

// BenchmarkFSMApplySends applies entries of 64 sends (one Badger
// transaction per entry); one op is one send.
func BenchmarkFSMApplySends(b *testing.B) {
	const per = 64
	f, db := openFSM(b, b.TempDir())
	defer db.Close()
	logs := sendEntries(b, 1, b.N/per+1, per)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < len(logs); i += 16 {
		f.ApplyBatch(logs[i:min(i+16, len(logs))])
	}
	b.StopTimer()
	b.ReportMetric(float64(len(logs)*per)/b.Elapsed().Seconds(), "sends/s")
}

// The FSM's allocations per send, decoding included, stay within a budget:
// a regression here costs every write. Measured 31 per send with Go 1.26
// and badger v4 (December 2026); the budget leaves a quarter for drift.
func TestFSMApplySendAllocs(t *testing.T) {
	const per, budget = 64, 40
	f, db := openFSM(t, t.TempDir())
	defer db.Close()
	logs := sendEntries(t, 1, 40, per)
	next := 0
	avg := testing.AllocsPerRun(len(logs)-1, func() {
		f.ApplyBatch(logs[next : next+1])
		next++
	})
	if got := avg / per; got > budget*allocSlack {
		t.Errorf("%.0f allocations per applied send, budget %d", got, budget*allocSlack)
	} else {
		t.Logf("%.0f allocations per applied send (budget %d)", got, budget)
	}
}
