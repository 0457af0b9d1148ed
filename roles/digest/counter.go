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
	// for that nonce and reports whether it was. ErrNonceForgotten means
	// the nonce is to be taken as stale.
	Advance(ctx context.Context, nonce string, nc uint64, expires time.Time) (bool, error)
}

// ErrCounterFull is returned by MemoryCounter when it holds its maximum
// number of live nonces and making room freed none for this one: a
// counter of fewer than eight, or concurrent nonces took the room first.
var ErrCounterFull = errors.New("digest: nonce counter is full")

// ErrNonceForgotten is returned by a NonceCounter for a nonce it no longer
// remembers, to make room: the nonce must be taken as stale (RFC 7616
// §3.3), and the client asks again with a fresh one, without bothering
// the user.
var ErrNonceForgotten = errors.New("digest: nonce forgotten to make room")

// MemoryCounter is the in-process NonceCounter: maps with expiry, swept
// lazily (no goroutine of its own), bounded in size.
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
//
// When it is full of live nonces, it forgets the eighth that expire first
// and from then on answers ErrNonceForgotten for every nonce expiring no
// later than those (the floor), whether it had seen it or not: the client
// gets a stale challenge and a new nonce, and a replay of a forgotten
// nonce is refused like any other. Refusing new nonces instead, as it did,
// refused every authenticated request of a node that had challenged 2^20
// in a nonce's lifetime (5 minutes: 3,500 REGISTERs a second) until the
// oldest expired: the benchmark's calls failed after its REGISTER ramp.
//
// Room is made in the background once the counter is fifteen sixteenths
// full, a shard's lock at a time, and Advance waits for it only if the
// counter fills before that is done. Made by the Advance that found the
// counter full, it swept all 2^20 nonces while every other Advance waited
// for it: BenchmarkMemoryCounterFull's longest Advance was 42-45 ms (now
// 0.4-1.2), and the bench's node, whose counter its REGISTER-auth ramp had
// filled, held every message that long about once per 130,000 REGISTERs
// (at 16,000/s, the longest a message spent in the node was 45-53 ms in
// each run).
type MemoryCounter struct {
	seed   maphash.Seed
	shards [counterShards]counterShard
	count  atomic.Int64
	max    int64
	// floor: nonces expiring no later than this are forgotten (Unix
	// nanoseconds); newest: the latest expiry recorded.
	floor, newest atomic.Int64
	room          sync.Mutex  // held while making room
	making        atomic.Bool // room is being made in the background
	now           func() time.Time
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
	exp := expires.UnixNano()
	if exp <= c.floor.Load() {
		return false, ErrNonceForgotten
	}
	switch n, early := c.count.Load(), c.max-c.max/16; {
	case n >= c.max:
		c.makeRoom(now, c.max)
		if exp <= c.floor.Load() {
			return false, ErrNonceForgotten
		}
	case n >= early && c.making.CompareAndSwap(false, true):
		go func() {
			defer c.making.Store(false)
			c.makeRoom(now, early)
		}()
	}
	for n := c.newest.Load(); exp > n && !c.newest.CompareAndSwap(n, exp); n = c.newest.Load() {
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
	sh.entries[key] = counterEntry{nc: nc, expires: exp}
	return true, nil
}

// Len is the number of nonces remembered.
func (c *MemoryCounter) Len() int { return int(c.count.Load()) }

// sweep forgets sh's expired nonces, and those below the floor; sh.mu is
// held.
func (c *MemoryCounter) sweep(sh *counterShard, now time.Time) {
	t := now.UnixNano()
	floor := c.floor.Load()
	for k, e := range sh.entries {
		if t >= e.expires || e.expires <= floor {
			delete(sh.entries, k)
			c.count.Add(-1)
		}
	}
	sh.lastSweep = now
}

// makeRoom, when the counter holds at least full nonces, sweeps every
// shard and, if that leaves it more than seven eighths full, raises the
// floor to forget the nonces that expire first, an eighth of the room.
func (c *MemoryCounter) makeRoom(now time.Time, full int64) {
	c.room.Lock()
	defer c.room.Unlock()
	if c.count.Load() < full {
		return // made while this one waited
	}
	c.sweepAll(now)
	if c.count.Load() <= c.max-c.max/8 {
		return
	}
	// The expiries left are in (now, newest]: a histogram over that span
	// finds the floor under which an eighth of them lie.
	const buckets = 256
	lo, hi := now.UnixNano(), c.newest.Load()
	width := max((hi-lo)/buckets, 1)
	var hist [buckets + 1]int64
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		for _, e := range sh.entries {
			hist[min(max((e.expires-lo)/width, 0), buckets)]++
		}
		sh.mu.Unlock()
	}
	// An eighth of the room, not of the nonces held: the same nonces
	// are forgotten whether room is made early or when full.
	want, seen := c.max/8, int64(0)
	floor := hi
	for b, n := range hist {
		if seen += n; seen >= want {
			floor = min(lo+int64(b+1)*width, hi)
			break
		}
	}
	if floor > c.floor.Load() {
		c.floor.Store(floor)
	}
	c.sweepAll(now)
}

// sweepAll sweeps every shard.
func (c *MemoryCounter) sweepAll(now time.Time) {
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.Lock()
		c.sweep(sh, now)
		sh.mu.Unlock()
	}
}
