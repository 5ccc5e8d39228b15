//go:build unix

package node_test

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/herald-notify/herald/internal/testnode"
	"github.com/herald-notify/herald/node"
)

// startOn starts a node on data and returns Start's error, closing the
// node if it started.
func startOn(t *testing.T, data string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := node.Start(ctx, testnode.Config(t, data), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.Close(ctx)
	}
	return err
}

// A data directory every user may write to is refused before the node
// writes anything there; one of the node's own, reached through the node's
// own link, is not.
func TestADataDirectoryEveryoneMayWriteIsRefused(t *testing.T) {
	base := t.TempDir()
	open := filepath.Join(base, "open")
	if err := os.Mkdir(open, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(open, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	err := startOn(t, open)
	if err == nil || !strings.Contains(err.Error(), "may be written by every user (mode 1777)") || !strings.Contains(err.Error(), "chmod 0700") {
		t.Fatalf("start on a directory of mode 1777: %v, want a refusal that says chmod 0700", err)
	}
	if entries, _ := os.ReadDir(open); len(entries) != 0 {
		t.Fatalf("the refused node wrote %d entries there, the first %s", len(entries), entries[0].Name())
	}

	own := filepath.Join(base, "own")
	link := filepath.Join(base, "link")
	if err := os.Symlink(own, link); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(own, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := startOn(t, link); err != nil {
		t.Fatalf("start on the node's own directory through its own link: %v", err)
	}
}

// A data directory that another user made (a predictable name such as
// /tmp/herald-data, or ./herald-data in /tmp) is theirs: they may plant
// links in it before the node starts, and a root node wrote its disk
// ballast through one into a file of root's (found by review). The node
// refuses it, and writes nothing through it.
func TestANodeWritesNothingThroughAnotherUsersDataDirectory(t *testing.T) {
	data, target := testnode.AnotherUsersDataDir(t, "disk-ballast.tmp", "node-id.tmp", "node-id")
	base := filepath.Dir(data)
	if err := os.WriteFile(target, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := startOn(t, data)
	if err == nil || !strings.Contains(err.Error(), "a directory of another user (uid 65534)") {
		t.Errorf("start on a data directory of user 65534: %v, want a refusal", err)
	}
	if b, _ := os.ReadFile(target); string(b) != "precious" {
		t.Fatalf("the node wrote %d bytes into %s through another user's link in its data directory", len(b), target)
	}

	// Their link to a directory of root's is refused as well: they could
	// point it elsewhere between two of the node's opens.
	rootsData := filepath.Join(base, "roots-data")
	if err := os.Mkdir(rootsData, 0o700); err != nil {
		t.Fatal(err)
	}
	theirs := filepath.Join(base, "to-roots")
	if err := os.Symlink(rootsData, theirs); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(theirs, testnode.OtherUID, testnode.OtherUID); err != nil {
		t.Fatal(err)
	}
	// Nor does a trailing slash, or a link of root's to theirs, get past
	// (found by review), and a directory of root's inside theirs is refused
	// too: they could rename it and put their own in its place.
	roots := filepath.Join(base, "roots-link")
	if err := os.Symlink(theirs, roots); err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(data, "roots-inside")
	if err := os.Mkdir(inside, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{theirs, theirs + "/", roots, inside} {
		if err := startOn(t, dir); err == nil || !strings.Contains(err.Error(), "of another user (uid 65534)") {
			t.Errorf("start on %s: %v, want a refusal", dir, err)
		}
	}
}
