package httpapi

import (
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/herald-notify/herald/credential"
	"github.com/herald-notify/herald/fanout"
)

// importChildEnv marks the copy of this test binary that
// TestImportRunsNoPasswordHash starts: in it no other test has run yet, so
// whatever hashing it finds was done by loading the packages.
const importChildEnv = "HERALD_TEST_IMPORT_CHILD"

// TestImportRunsNoPasswordHash: loading the package and building a server
// make no password hash. The decoy hash for unknown users (credential.
// DecoyHash) once ran at package load, costing every process that imports
// httpapi 19 MiB of heap and tens of milliseconds before it did anything.
func TestImportRunsNoPasswordHash(t *testing.T) {
	if os.Getenv(importChildEnv) == "1" {
		if n := credential.Derivations(); n != 0 {
			t.Fatalf("%d password hashes ran while the packages loaded", n)
		}
		New(Options{Hub: fanout.NewHub()})
		if n := credential.Derivations(); n != 0 {
			t.Fatalf("%d password hashes ran while a server was built", n)
		}
		// The decoy is still made when a check needs it.
		credential.CheckPassword(credential.DecoyHash(), "guess")
		if n := credential.Derivations(); n != 2 {
			t.Fatalf("%d password hashes for the decoy and one check, want 2", n)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestImportRunsNoPasswordHash$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), importChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the fresh process: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestImportRunsNoPasswordHash") {
		t.Fatalf("the fresh process ran no check:\n%s", out)
	}
	t.Logf("a fresh process: %s", strconv.Quote(strings.TrimSpace(string(out))))
}
