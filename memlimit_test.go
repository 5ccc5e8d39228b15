package main

import (
	"testing"
)

func TestServeMemoryLimitFollowsMemoryUnlessGOMEMLIMITIsSet(t *testing.T) {
	env := func(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }
	for _, c := range []struct {
		memory string
		env    map[string]string
		want   int64
		set    bool
	}{
		{"", nil, 152 << 20, true},
		{"64MiB", nil, 152 << 20, true},
		{"256MiB", map[string]string{"GOMEMLIMIT": ""}, 536 << 20, true},
		{"256MiB", map[string]string{"GOMEMLIMIT": "1GiB"}, 0, false},
	} {
		got, set, err := memoryLimit(c.memory, env(c.env))
		if err != nil || got != c.want || set != c.set {
			t.Errorf("memoryLimit(%q, %v) = %d MiB, %v, %v; want %d MiB, %v", c.memory, c.env, got>>20, set, err, c.want>>20, c.set)
		}
	}
	if _, _, err := memoryLimit("8MiB", env(nil)); err == nil {
		t.Error("--memory 8MiB gave a limit; it is below the floor")
	}
}
