package cluster

import (
	"errors"
	"testing"

	"github.com/herald-notify/herald/raft"
	"github.com/herald-notify/herald/resource"
)

// A forwarded write whose first send may have been committed (its answer
// lost) and whose resend met a full disk must not be answered with the
// guard's 507, which tells the client that nothing was stored.
func TestResendRefusedForAFullDiskHasAnUnknownOutcome(t *testing.T) {
	full := resource.Errorf(resource.CodeQuotaReached,
		"The server's disk is full (3.0 MiB free, below the reserve of 48.0 MiB); nothing was stored. Deleting notifications or freeing space on the server lets writes resume by themselves.")
	if !raft.IsDiskFull(full) {
		t.Fatal("the guard's refusal is not recognised")
	}
	if err := resentOutcome(&pendingWrite{sent: true}, full); !errors.Is(err, raft.ErrUnknownOutcome) || raft.IsDiskFull(err) {
		t.Errorf("a refused resend of a write that may have committed: %v, want ErrUnknownOutcome", err)
	}
	if err := resentOutcome(&pendingWrite{}, full); err != full {
		t.Errorf("a refused write never sent before: %v, want the 507 itself", err)
	}
	quota := resource.Errorf(resource.CodeQuotaReached, "The user has the most active subscriptions allowed (10).")
	if err := resentOutcome(&pendingWrite{sent: true}, quota); err != quota {
		t.Errorf("the FSM's own quota answer to a resend: %v, want it unchanged", err)
	}
}
