package node

import (
	"context"
	"errors"
	"log/slog"
)

// Run starts a node with cfg and blocks until ctx is cancelled, then shuts the
// node down gracefully.
func Run(ctx context.Context, cfg Config, logger *slog.Logger) error {
	return errors.New("not yet built")
}
