package digest

import (
	"context"
	"errors"
	"sync"
	"time"
)

// NonceCounter remembers the highest nonce-count (nc) accepted per nonce so
// that a replayed request is refused (RFC 7616 §3.4.5, RFC 2617 §3.2.2).
// Implementations must be safe for concurrent use. A record may be forgotten
// after expires: by then the nonce is stale and refused anyway.
type NonceCounter interface {
	// Advance records nc for nonce if it is higher than every nc recorded
	// for that nonce and reports whether it was.
	Advance(ctx context.Context, nonce string, nc uint64, expires time.Time) (bool, error)
}

// ErrCounterFull is returned by MemoryCounter when it holds its maximum
// number of live nonces.
var ErrCounterFull = errors.New("digest: nonce counter is full")

// MemoryCounter is the in-process NonceCounter: a map with expiry, swept
// lazily (no goroutine), bounded in size.
type MemoryCounter struct {
	mu        sync.Mutex
	entries   map[string]counterEntry
	max       int
	now       func() time.Time
	lastSweep time.Time
}

type counterEntry struct {
	nc      uint64
	expires time.Time
}

// MemoryCounterOption configures a MemoryCounter.
type MemoryCounterOption func(*MemoryCounter)

// WithCounterClock sets the clock (tests).
func WithCounterClock(now func() time.Time) MemoryCounterOption {
	return func(c *MemoryCounter) { c.now = now }
}

// WithMaxNonces bounds the number of live nonces remembered (default 1<<20).
func WithMaxNonces(n int) MemoryCounterOption {
	return func(c *MemoryCounter) {
		if n > 0 {
			c.max = n
		}
	}
}

// NewMemoryCounter returns an empty MemoryCounter.
func NewMemoryCounter(opts ...MemoryCounterOption) *MemoryCounter {
	c := &MemoryCounter{entries: make(map[string]counterEntry), max: 1 << 20, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	return c
}

// Advance implements NonceCounter.
func (c *MemoryCounter) Advance(_ context.Context, nonce string, nc uint64, expires time.Time) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	if now.Sub(c.lastSweep) > time.Minute || len(c.entries) >= c.max {
		c.sweep(now)
	}
	e, ok := c.entries[nonce]
	if ok && now.Before(e.expires) && nc <= e.nc {
		return false, nil
	}
	if !ok && len(c.entries) >= c.max {
		return false, ErrCounterFull
	}
	c.entries[nonce] = counterEntry{nc: nc, expires: expires}
	return true, nil
}

// Len is the number of nonces remembered.
func (c *MemoryCounter) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *MemoryCounter) sweep(now time.Time) {
	for k, e := range c.entries {
		if !now.Before(e.expires) {
			delete(c.entries, k)
		}
	}
	c.lastSweep = now
}
