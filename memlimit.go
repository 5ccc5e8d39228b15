package main

import (
	"github.com/herald-notify/herald/raft"
)

// memoryLimit is the Go memory limit `herald serve` sets for a node whose
// --memory is memory (raft.GoMemoryLimit), and false when the operator set
// GOMEMLIMIT: the runtime has applied that already, and it wins.
func memoryLimit(memory string, getenv func(string) string) (int64, bool, error) {
	if getenv("GOMEMLIMIT") != "" {
		return 0, false, nil
	}
	budget, err := raft.ParseMemory(memory)
	if err != nil {
		return 0, false, err
	}
	return raft.GoMemoryLimit(budget), true, nil
}
