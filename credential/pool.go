package credential

import (
	"context"
	"errors"
)

// ErrBusy means the pool's workers and its queue are all taken: the caller
// should answer at once (503 with Retry-After) rather than wait.
var ErrBusy = errors.New("credential: too many password hashes in progress")

// Pool bounds the password hashing of a process. Each argon2id hash holds
// 19 MiB for its whole run, and a sign-in attempt costs one even for a user
// that does not exist, so without a bound anyone who can reach the token
// endpoint decides how much memory the server uses. At most workers hashes
// run at once; at most queue more wait for a worker; anyone beyond that gets
// ErrBusy immediately, so neither memory nor waiting grows with the load.
type Pool struct {
	admit chan struct{} // held from arrival to the end: workers + queue
	run   chan struct{} // held while hashing: workers
}

// NewPool makes a pool of workers concurrent hashes and queue waiters.
func NewPool(workers, queue int) *Pool {
	workers = max(workers, 1)
	queue = max(queue, 0)
	return &Pool{admit: make(chan struct{}, workers+queue), run: make(chan struct{}, workers)}
}

// Do runs fn on a worker of the pool: ErrBusy when the queue is full, or
// ctx's error when ctx ends while waiting (fn then does not run).
func (p *Pool) Do(ctx context.Context, fn func()) error {
	select {
	case p.admit <- struct{}{}:
	default:
		return ErrBusy
	}
	defer func() { <-p.admit }()
	select {
	case p.run <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.run }()
	fn()
	return nil
}

// Hash is HashPassword on a worker of the pool.
func (p *Pool) Hash(ctx context.Context, pw string) (string, error) {
	var h string
	err := p.Do(ctx, func() { h = HashPassword(pw) })
	return h, err
}

// Check is CheckPassword on a worker of the pool.
func (p *Pool) Check(ctx context.Context, encoded, pw string) (bool, error) {
	var ok bool
	err := p.Do(ctx, func() { ok = CheckPassword(encoded, pw) })
	return ok, err
}

// CheckDecoy checks pw against DecoyHash on a worker of the pool, for a
// sign-in of an unknown name; the first call also makes the decoy there,
// so that it too counts against the bound.
func (p *Pool) CheckDecoy(ctx context.Context, pw string) error {
	return p.Do(ctx, func() { CheckPassword(DecoyHash(), pw) })
}
