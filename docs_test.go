package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/herald-notify/herald/raft"
)

// otherTools' long options appear in the docs' commands too (curl, docker,
// go, git, jq, systemctl); anything else must be a flag herald has.
var otherTools = map[string]bool{
	"data-urlencode": true, // curl
	"arg":            true, // jq
	"now":            true, // systemctl enable --now
	"stop-timeout":   true, // docker run
	"rm":             true, // docker run
	"tmpfs":          true, // docker run
	"no-deps":        true, // docker compose up
	"help":           true, // every command's, from the cli package
	// API-NOTES.md says these two do not exist.
	"ca": true, "insecure": true,
}

// The docs name only flags that the herald command line has: a flag
// renamed or removed must take its docs along.
func TestDocsNameOnlyRealFlags(t *testing.T) {
	known := map[string]bool{}
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			for _, f := range c.Flags {
				for _, n := range f.Names() {
					known[n] = true
				}
			}
			walk(c.Subcommands)
		}
	}
	app := newApp()
	for _, f := range app.Flags {
		for _, n := range f.Names() {
			known[n] = true
		}
	}
	walk(app.Commands)
	if !known["cluster-key"] || !known["bootstrap-expect"] || !known["out"] {
		t.Fatalf("the walk found too few flags: %d", len(known))
	}

	files, err := filepath.Glob("docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "README.md")
	flag := regexp.MustCompile("(?:^|[\\s`(])--([a-z][a-z0-9-]+)")
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		bad := map[string]bool{}
		for _, m := range flag.FindAllStringSubmatch(string(b), -1) {
			if name := m[1]; !known[name] && !otherTools[name] {
				bad[name] = true
			}
		}
		var names []string
		for n := range bad {
			names = append(names, "--"+n)
		}
		sort.Strings(names)
		if len(names) > 0 {
			t.Errorf("%s names flags herald does not have: %v", file, names)
		}
	}
}

// The sample output of `herald cluster status` in docs/cluster.md shows the
// rules level a new cluster forms at: the newest this release knows.
func TestClusterDocShowsTheCurrentRulesLevel(t *testing.T) {
	b, err := os.ReadFile("docs/cluster.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`rules level: (\d+)`).FindAllStringSubmatch(string(b), -1)
	if len(m) == 0 {
		t.Fatal("docs/cluster.md shows no cluster status")
	}
	for _, x := range m {
		if x[1] != strconv.Itoa(raft.RulesLevel) {
			t.Errorf("docs/cluster.md shows rules level %s; a new cluster forms at %d", x[1], raft.RulesLevel)
		}
	}
}

// API-NOTES.md shows a webhook receiver to copy; the copy must be the code
// that a test runs against a real node (node's
// TestWebhookReceiverFromTheDocsVerifiesDeliveries).
func TestWebhookReceiverInTheDocsIsTheTestedOne(t *testing.T) {
	src, err := os.ReadFile("docs/examples/webhookverify/webhookverify.go")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := os.ReadFile("docs/API-NOTES.md")
	if err != nil {
		t.Fatal(err)
	}
	code := string(src)
	code = code[strings.Index(code, "import ("):]
	if !strings.Contains(string(doc), "```go\n"+code+"```\n") {
		t.Error("docs/API-NOTES.md does not hold docs/examples/webhookverify/webhookverify.go from its imports on, as a go block")
	}
}
