// Command vulncheck runs govulncheck offline: it builds a vulnerability
// database in govulncheck's file format (index/db.json, index/modules.json,
// index/vulns.json, ID/<id>.json) from a folder of OSV entries, the data/osv
// folder of the golang.org/x/vulndb module, which the module proxy serves
// at a pinned version, then runs govulncheck against it and fails when the
// code calls a vulnerable function, unless the advisory is accepted, with a
// reason, in the accept file.
//
//	go run ./.ci/vulncheck -osv DIR -govulncheck BIN [-accept FILE] [patterns]
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

func main() {
	osvDir := flag.String("osv", "", "folder of OSV JSON entries (golang.org/x/vulndb's data/osv)")
	bin := flag.String("govulncheck", "govulncheck", "the govulncheck binary")
	acceptFile := flag.String("accept", "", "file of accepted advisories: one 'ID reason...' a line, # comments")
	flag.Parse()
	if *osvDir == "" {
		fail("-osv is required")
	}
	patterns := flag.Args()
	if len(patterns) == 0 {
		patterns = []string{"./..."}
	}
	db, err := os.MkdirTemp("", "vulndb")
	if err != nil {
		fail("%v", err)
	}
	defer os.RemoveAll(db)
	n, err := buildDB(*osvDir, db)
	if err != nil {
		fail("build the database: %v", err)
	}
	accepted, err := readAccept(*acceptFile)
	if err != nil {
		fail("%v", err)
	}
	fmt.Printf("vulncheck: %d advisories from %s\n", n, *osvDir)

	cmd := exec.Command(*bin, append([]string{"-format", "json", "-db", "file://" + db}, patterns...)...)
	cmd.Stderr = os.Stderr
	out, runErr := cmd.Output()
	var exit *exec.ExitError
	if runErr != nil && !errors.As(runErr, &exit) {
		fail("run govulncheck: %v", runErr)
	}
	called, imported, summaries, err := readFindings(out)
	if err != nil {
		fail("read govulncheck's output: %v (govulncheck: %v)", err, runErr)
	}
	// Exit status 3 means "called vulnerabilities found"; anything else
	// is govulncheck failing, which must not pass as a clean scan.
	if exit != nil && (exit.ExitCode() != 3 || len(called) == 0) {
		fail("govulncheck failed: %v", runErr)
	}
	ids := make([]string, 0, len(called))
	for id := range called {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	bad := 0
	for _, id := range ids {
		f := called[id]
		verdict := "VULNERABLE"
		if reason, ok := accepted[id]; ok {
			verdict = "accepted"
			f.fixed += "; accepted: " + reason
			delete(accepted, id)
		} else {
			bad++
		}
		fmt.Printf("%s %s: %s\n    in %s, fixed in %s\n    called: %s\n", verdict, id, summaries[id], f.where, orNone(f.fixed), f.trace)
	}
	for id, reason := range accepted {
		fmt.Printf("note: accepted advisory %s no longer applies (%s); remove it from the accept file\n", id, reason)
	}
	fmt.Printf("vulncheck: %d called (%d not accepted), %d more in imported packages the code does not call\n",
		len(called), bad, len(imported))
	if bad > 0 {
		os.Exit(1)
	}
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vulncheck: "+format+"\n", args...)
	os.Exit(2)
}

func orNone(s string) string {
	if s == "" {
		return "no release yet"
	}
	return s
}

// osvEntry is the part of an OSV entry the index needs.
type osvEntry struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases"`
	Summary  string    `json:"summary"`
	Affected []struct {
		Module struct {
			Path string `json:"name"`
		} `json:"package"`
	} `json:"affected"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
}

type moduleIndex struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type vulnIndex struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// buildDB writes the database govulncheck reads with -db file://dir. The
// module index leaves out each entry's "fixed" hint, so govulncheck matches
// every advisory of a module against its ranges itself.
func buildDB(osvDir, out string) (int, error) {
	files, err := filepath.Glob(filepath.Join(osvDir, "*.json"))
	if err != nil {
		return 0, err
	}
	if len(files) < 100 {
		return 0, fmt.Errorf("only %d OSV entries in %s", len(files), osvDir)
	}
	for _, d := range []string{"ID", "index"} {
		if err := os.MkdirAll(filepath.Join(out, d), 0o755); err != nil {
			return 0, err
		}
	}
	var latest time.Time
	modules := map[string][]moduleVuln{}
	var vulns []vulnIndex
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return 0, err
		}
		var e osvEntry
		if err := json.Unmarshal(b, &e); err != nil {
			return 0, fmt.Errorf("%s: %v", f, err)
		}
		if e.ID == "" || e.ID+".json" != filepath.Base(f) {
			return 0, fmt.Errorf("%s: id %q does not match the file name", f, e.ID)
		}
		if err := os.WriteFile(filepath.Join(out, "ID", e.ID+".json"), b, 0o644); err != nil {
			return 0, err
		}
		if e.Modified.After(latest) {
			latest = e.Modified
		}
		vulns = append(vulns, vulnIndex{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		seen := map[string]bool{}
		for _, a := range e.Affected {
			if p := a.Module.Path; p != "" && !seen[p] {
				seen[p] = true
				modules[p] = append(modules[p], moduleVuln{ID: e.ID, Modified: e.Modified})
			}
		}
	}
	var mods []moduleIndex
	for p, vs := range modules {
		mods = append(mods, moduleIndex{Path: p, Vulns: vs})
	}
	sort.Slice(mods, func(i, j int) bool { return mods[i].Path < mods[j].Path })
	for name, v := range map[string]any{"db.json": map[string]time.Time{"modified": latest}, "modules.json": mods, "vulns.json": vulns} {
		b, err := json.Marshal(v)
		if err != nil {
			return 0, err
		}
		if err := os.WriteFile(filepath.Join(out, "index", name), b, 0o644); err != nil {
			return 0, err
		}
	}
	return len(vulns), nil
}

func readAccept(path string) (map[string]string, error) {
	out := map[string]string{}
	if path == "" {
		return out, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, reason, _ := strings.Cut(line, " ")
		if strings.TrimSpace(reason) == "" {
			return nil, fmt.Errorf("%s: %s is accepted without a reason", path, id)
		}
		out[id] = strings.TrimSpace(reason)
	}
	return out, sc.Err()
}

// finding is the part of govulncheck's JSON stream this reads.
type message struct {
	OSV     *osvEntry `json:"osv"`
	Finding *struct {
		OSV   string `json:"osv"`
		Fixed string `json:"fixed_version"`
		Trace []struct {
			Module   string `json:"module"`
			Version  string `json:"version"`
			Package  string `json:"package"`
			Function string `json:"function"`
			Receiver string `json:"receiver"`
			Position *struct {
				Filename string `json:"filename"`
				Line     int    `json:"line"`
			} `json:"position"`
		} `json:"trace"`
	} `json:"finding"`
}

type found struct{ where, fixed, trace string }

// readFindings sorts govulncheck's findings: called are those whose trace
// reaches a vulnerable function from the code (govulncheck's exit status
// 3); imported, only a vulnerable package or module.
func readFindings(out []byte) (called, imported map[string]found, summaries map[string]string, err error) {
	called, imported, summaries = map[string]found{}, map[string]found{}, map[string]string{}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m message
		if err := dec.Decode(&m); err != nil {
			return nil, nil, nil, err
		}
		if m.OSV != nil {
			summaries[m.OSV.ID] = m.OSV.Summary
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 {
			continue
		}
		top := f.Trace[0]
		fd := found{where: top.Module + "@" + top.Version, fixed: f.Fixed}
		if top.Function == "" {
			imported[f.OSV] = fd
			continue
		}
		var steps []string
		for i := len(f.Trace) - 1; i >= 0; i-- {
			fr := f.Trace[i]
			s := fr.Package + "." + fr.Function
			if fr.Receiver != "" {
				s = fr.Package + "." + strings.TrimPrefix(fr.Receiver, "*") + "." + fr.Function
			}
			if fr.Position != nil && i == len(f.Trace)-1 {
				s += " (" + filepath.Base(fr.Position.Filename) + ":" + fmt.Sprint(fr.Position.Line) + ")"
			}
			steps = append(steps, s)
		}
		fd.trace = strings.Join(steps, " → ")
		if _, ok := called[f.OSV]; !ok {
			called[f.OSV] = fd
		}
	}
	return called, imported, summaries, nil
}
