package digest

import (
	"context"
	"errors"
	"hash/maphash"
	"sync"
	"sync/atomic"
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

// MemoryCounter is the in-process NonceCounter: maps with expiry, swept
// lazily (no goroutine), bounded in size.
//
// A node that challenges every REGISTER remembers a nonce per
// registration for the nonce's lifetime: hundreds of thousands at
// thousands of REGISTERs a second. So the counter is split in shards, each
// with its own lock and its own sweep once a minute (one map swept under
// one lock stalled every REGISTER of the node for tens of milliseconds),
// and nonces are kept as 64-bit keyed hashes next to their nc and expiry,
// in maps without pointers that the garbage collector need not scan. Two
// live nonces with the same hash, a chance of one in 2^64 per pair, would
// share an nc: the later one's first use could be refused as a replay and
// the client asked again, nothing worse.
type MemoryCounter struct {
	seed   maphash.Seed
	shards [counterShards]counterShard
	count  atomic.Int64
	max    int64
	// lastFull is when the counter, full, last swept every shard (Unix
	// nanoseconds).
	lastFull atomic.Int64
	now      func() time.Time
}

const counterShards = 64

type counterShard struct {
	mu        sync.Mutex
	entries   map[uint64]counterEntry
	lastSweep time.Time
}

type counterEntry struct {
	nc      uint64
	expires int64 // Unix nanoseconds
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
			c.max = int64(n)
		}
	}
}

// NewMemoryCounter returns an empty MemoryCounter.
func NewMemoryCounter(opts ...MemoryCounterOption) *MemoryCounter {
	c := &MemoryCounter{seed: maphash.MakeSeed(), max: 1 << 20, now: time.Now}
	for _, o := range opts {
		o(c)
	}
	start := c.now()
	for i := range c.shards {
		c.shards[i].entries = map[uint64]counterEntry{}
		c.shards[i].lastSweep = start
	}
	return c
}

// Advance implements NonceCounter.
func (c *MemoryCounter) Advance(_ context.Context, nonce string, nc uint64, expires time.Time) (bool, error) {
	now := c.now()
	if c.count.Load() >= c.max {
		c.sweepAll(now) // full: whatever has expired anywhere makes room, once a second at most
	}
	key := maphash.String(c.seed, nonce)
	sh := &c.shards[key%counterShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if now.Sub(sh.lastSweep) > time.Minute {
		c.sweep(sh, now)
	}
	e, ok := sh.entries[key]
	if ok && now.UnixNano() < e.expires && nc <= e.nc {
		return false, nil
	}
	if !ok {
		if c.count.Add(1) > c.max {
			c.count.Add(-1)
			return false, ErrCounterFull
		}
	}
	sh.entries[key] = counterEntry{nc: nc, expires: expires.UnixNano()}
	return true, nil
}

// Len is the number of nonces remembered.
func (c *MemoryCounter) Len() int { return int(c.count.Load()) }

// sweep forgets sh's expired nonces; sh.mu is held.
func (c *MemoryCounter) sweep(sh *counterShard, now time.Time) {
	t := now.UnixNano()
	for k, e := range sh.entries {
		if t >= e.expires {
			delete(sh.entries, k)
			c.count.Add(-1)
		}
	}
	sh.lastSweep = now
}

// sweepAll sweeps every shard, at most once a second: a full counter is
// asked on every first use of a nonce.
func (c *MemoryCounter) sweepAll(now time.Time) {
	last := c.lastFull.Load()
	if now.UnixNano()-last < int64(time.Second) || !c.lastFull.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		c.sweep(sh, now)
		sh.mu.Unlock()
	}
}
