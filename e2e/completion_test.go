package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBashCompletion loads "herald completion bash" into a real bash and
// completes command lines as the shell would on Tab.
func TestBashCompletion(t *testing.T) {
	t.Parallel()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Skip("no bash")
	}
	script := `source <(herald completion bash)
while IFS= read -r line; do
  read -ra COMP_WORDS <<< "$line"
  [[ $line == *" " ]] && COMP_WORDS+=("")
  COMP_CWORD=$((${#COMP_WORDS[@]}-1))
  COMPREPLY=()
  _herald_complete
  echo "${COMPREPLY[*]}"
done`
	cases := []struct{ line, want string }{
		{"herald us", "users"},
		{"herald users a", "add"},
		{"herald cluster re", "remove"},
		{"herald send --ti", "--title"},
		{"herald serve --print-c", "--print-config"},
		{"herald he", "healthcheck help"},
	}
	var in strings.Builder
	for _, c := range cases {
		in.WriteString(c.line + "\n")
	}
	cmd := exec.Command(bash, "-c", script)
	cmd.Env = cleanEnv("PATH=" + filepath.Dir(heraldBin) + string(os.PathListSeparator) + os.Getenv("PATH"))
	cmd.Stdin = strings.NewReader(in.String())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	got := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(got) != len(cases) {
		t.Fatalf("bash printed %q", out)
	}
	for i, c := range cases {
		if got[i] != c.want {
			t.Errorf("%q completes to %q, want %q", c.line, got[i], c.want)
		}
	}
}
