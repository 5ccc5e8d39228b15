package resource

import (
	"sort"
	"testing"
	"time"
)

// Ids one process makes in the same millisecond sort in the order they
// were made, and still carry their time.
func TestAuditIDsOfOneMillisecondKeepTheirOrder(t *testing.T) {
	at := time.UnixMilli(1_700_000_000_123)
	ids := make([]string, 50)
	for i := range ids {
		ids[i] = AuditID(at)
	}
	if !sort.StringsAreSorted(ids) {
		t.Fatalf("ids of one millisecond out of order: %v", ids)
	}
	for _, id := range ids {
		if ms, ok := AuditIDTime(id); !ok || ms != at.UnixMilli() {
			t.Fatalf("AuditIDTime(%q) = %d, %v", id, ms, ok)
		}
	}
	if later := AuditID(at.Add(time.Millisecond)); later <= ids[len(ids)-1] {
		t.Fatalf("an id of the next millisecond %q sorts before %q", later, ids[len(ids)-1])
	}
}
