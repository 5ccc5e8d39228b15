//go:build linux

package chaos

import (
	"encoding/json"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// envHistory names a history a failed run saved; TestRecheckHistory runs
// the linearizability check on it again and narrows each illegal key down
// to the shortest failing prefix, for reading a failure without rerunning
// the cluster.
const envHistory = "HERALD_CHAOS_HISTORY"

func TestRecheckHistory(t *testing.T) {
	path := os.Getenv(envHistory)
	if path == "" {
		t.Skipf("set %s to a saved history", envHistory)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ops []*op
	if err := json.Unmarshal(b, &ops); err != nil {
		t.Fatal(err)
	}
	hist := linearizabilityHistory(ops, primaries(facts(ops)))
	for _, part := range registerModel.Partition(hist) {
		if porcupine.CheckOperationsTimeout(registerModel, part, 10*time.Second) != porcupine.Illegal {
			continue
		}
		sort.Slice(part, func(i, j int) bool { return part[i].Call < part[j].Call })
		n := len(part)
		for n > 1 && porcupine.CheckOperationsTimeout(registerModel, part[:n-1], 10*time.Second) == porcupine.Illegal {
			n--
		}
		t.Errorf("key %s: illegal from its %dth operation on; the last ones:", part[0].Metadata, n)
		for _, o := range part[max(0, n-8):n] {
			t.Logf("  %s", o.Input.(regInput).desc)
		}
	}
}
