package node

import (
	"os"
	"path/filepath"
	"testing"
)

// The id a data directory was first started with is kept whole for the
// next start, and what wrote it leaves nothing beside it.
func TestTheNodeIDIsKeptForTheNextStart(t *testing.T) {
	dir := t.TempDir()
	// What a crash between creating and renaming the file leaves.
	if err := os.WriteFile(filepath.Join(dir, "node-id.tmp"), []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	first, err := nodeID(Config{DataDir: dir})
	if err != nil || first == "" {
		t.Fatalf("nodeID = %q, %v", first, err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "node-id"))
	if err != nil || string(b) != first+"\n" {
		t.Fatalf("node-id holds %q (%v), want %q", b, err, first+"\n")
	}
	if _, err := os.Stat(filepath.Join(dir, "node-id.tmp")); !os.IsNotExist(err) {
		t.Fatalf("node-id.tmp is still there: %v", err)
	}
	if again, err := nodeID(Config{DataDir: dir}); err != nil || again != first {
		t.Fatalf("second start: nodeID = %q, %v; want %q", again, err, first)
	}
	if err := os.WriteFile(filepath.Join(dir, "node-id"), []byte("chosen-before\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if kept, err := nodeID(Config{DataDir: dir}); err != nil || kept != "chosen-before" {
		t.Fatalf("nodeID = %q, %v; want the stored chosen-before", kept, err)
	}
}
