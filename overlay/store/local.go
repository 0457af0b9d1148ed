package store

import (
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sipmesh/sipmesh/internal/cacheline"
)

// local is a node's own copy of a store: one map per partition, each with
// its own lock and an incrementally maintained digest (the XOR of its keys'
// digests), so that anti-entropy compares a partition in O(1).
type local struct {
	merger Merger
	ttl    time.Duration // tombstone lifetime of records that never expire
	parts  []*partition
}

type partition struct {
	mu     sync.RWMutex
	keys   map[string]*entry
	digest uint64
	// due is no later than the first time a record of the partition may
	// be forgotten (zero: none may), so that a sweep with nothing due is
	// free.
	due time.Time
}

// forgetAt is when r may be forgotten; zero: never.
func forgetAt(r Record) time.Time {
	if r.Expires.IsZero() {
		return time.Time{}
	}
	if r.horizon.After(r.Expires) {
		return r.horizon
	}
	return r.Expires
}

func (pt *partition) noteDue(recs []Record) {
	for _, r := range recs {
		if t := forgetAt(r); !t.IsZero() && (pt.due.IsZero() || t.Before(pt.due)) {
			pt.due = t
		}
	}
}

type entry struct {
	recs   []Record // sorted by ID
	digest uint64
	// shared is set once recs has been handed out without a copy (getLive,
	// snapshot): a write then replaces the slice instead of changing it.
	// Until then a write changes it in place: a registrar writes an AOR on
	// every REGISTER, and copying its dozen records each time was the
	// biggest allocation of a REGISTER.
	shared atomic.Bool
}

// snap is a copy of one key taken for a push.
type snap struct {
	key    string
	recs   []Record
	digest uint64
}

func newLocal(partitions int, m Merger, ttl time.Duration) *local {
	l := &local{merger: m, ttl: ttl, parts: make([]*partition, partitions)}
	for i := range l.parts {
		l.parts[i] = &partition{keys: map[string]*entry{}}
	}
	return l
}

// apply merges records into key's copy and reports whether it changed.
// Expired records are dropped, both those arriving and those found.
func (l *local) apply(p int, key string, in []Record, now time.Time) bool {
	pt := l.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	e := pt.keys[key]
	var recs []Record
	var old uint64
	if e != nil {
		recs, old = e.recs, e.digest
		if e.shared.Load() {
			recs = slices.Clone(recs)
		}
	}
	d := old // kept as keyDigest(key, recs), record by record
	for _, r := range in {
		r = normalize(r)
		if r.ID == "" {
			continue
		}
		if r.Deleted && r.Expires.IsZero() {
			r.Expires = now.Add(l.ttl)
		}
		i, found := slices.BinarySearchFunc(recs, r.ID, func(x Record, id string) int { return strings.Compare(x.ID, id) })
		if found {
			// Even a version that is gone may win, and then it is
			// remembered as long as the one it beat could come back.
			d ^= recordDigest(key, recs[i])
			recs[i] = resolve(l.merger, recs[i], r, now, l.ttl)
			d ^= recordDigest(key, recs[i])
		} else if !r.gone(now) {
			recs = slices.Insert(recs, i, r)
			d ^= recordDigest(key, r)
		}
	}
	recs = slices.DeleteFunc(recs, func(r Record) bool {
		if r.gone(now) {
			d ^= recordDigest(key, r)
			return true
		}
		return false
	})
	if len(recs) == 0 {
		if e != nil {
			delete(pt.keys, key)
			pt.digest ^= old
			return true
		}
		return false
	}
	if e != nil && !e.shared.Load() {
		e.recs, e.digest = recs, d // in place, the slice's own
	} else if e == nil || d != old {
		pt.keys[key] = &entry{recs: recs, digest: d}
	}
	if e != nil && d == old {
		return false
	}
	pt.digest ^= old ^ d
	pt.noteDue(recs)
	return true
}

// get returns key's records not yet gone: live ones, and the tombstones and
// expired versions kept to beat stale copies.
func (l *local) get(p int, key string, now time.Time) []Record {
	pt := l.parts[p]
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	e := pt.keys[key]
	if e == nil {
		return nil
	}
	out := make([]Record, 0, len(e.recs))
	for _, r := range e.recs {
		if !r.gone(now) {
			out = append(out, r)
		}
	}
	return out
}

// getLive is what Store.live makes of get's result, taken straight from
// key's entry, whose slice a write then replaces rather than changes
// (entry.shared): a single node reads its own copy on every request, and
// the intermediate copy was one more slice per read.
func (l *local) getLive(p int, key string, now time.Time) []Record {
	pt := l.parts[p]
	pt.mu.RLock()
	var recs []Record
	if e := pt.keys[key]; e != nil {
		e.shared.Store(true)
		recs = e.recs
	}
	pt.mu.RUnlock()
	return liveRecords(recs, now)
}

// eachLive calls fn with each live record of key, under the partition's
// lock, without handing out the slice: the next write may change it in
// place.
func (l *local) eachLive(p int, key string, now time.Time, fn func(Record)) {
	pt := l.parts[p]
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	if e := pt.keys[key]; e != nil {
		// The records are read one by one, each handed to fn: read
		// ahead, their cache misses overlap (internal/cacheline).
		cacheline.TouchSlice(e.recs)
		for _, r := range e.recs {
			if r.Live(now) {
				fn(r)
			}
		}
	}
}

// sweep forgets the records of partition p that are gone.
func (l *local) sweep(p int, now time.Time) {
	pt := l.parts[p]
	pt.mu.RLock()
	due := pt.due
	pt.mu.RUnlock()
	if due.IsZero() || now.Before(due) {
		return
	}
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for key, e := range pt.keys {
		if !slices.ContainsFunc(e.recs, func(r Record) bool { return r.gone(now) }) {
			continue
		}
		recs := slices.DeleteFunc(slices.Clone(e.recs), func(r Record) bool { return r.gone(now) })
		pt.digest ^= e.digest
		if len(recs) == 0 {
			delete(pt.keys, key)
			continue
		}
		ne := &entry{recs: recs, digest: keyDigest(key, recs)}
		pt.keys[key] = ne
		pt.digest ^= ne.digest
	}
	pt.due = time.Time{}
	for _, e := range pt.keys {
		pt.noteDue(e.recs)
	}
}

// partitionDigest is the digest of partition p after a sweep.
func (l *local) partitionDigest(p int, now time.Time) uint64 {
	l.sweep(p, now)
	pt := l.parts[p]
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	return pt.digest
}

// keyDigests returns every key of partition p with its digest, after a sweep.
func (l *local) keyDigests(p int, now time.Time) map[string]uint64 {
	l.sweep(p, now)
	pt := l.parts[p]
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	out := make(map[string]uint64, len(pt.keys))
	for k, e := range pt.keys {
		out[k] = e.digest
	}
	return out
}

// snapshot copies partition p's unexpired keys.
func (l *local) snapshot(p int, now time.Time) []snap {
	l.sweep(p, now)
	pt := l.parts[p]
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	out := make([]snap, 0, len(pt.keys))
	for k, e := range pt.keys {
		e.shared.Store(true)
		out = append(out, snap{key: k, recs: e.recs, digest: e.digest})
	}
	return out
}

// dropUnchanged forgets the keys of a snapshot that did not change since:
// a write that raced with a handoff stays for the next one.
func (l *local) dropUnchanged(p int, snaps []snap) {
	pt := l.parts[p]
	pt.mu.Lock()
	defer pt.mu.Unlock()
	for _, s := range snaps {
		if e := pt.keys[s.key]; e != nil && e.digest == s.digest {
			delete(pt.keys, s.key)
			pt.digest ^= e.digest
		}
	}
}

// size is the number of keys in partition p, expired ones included.
func (l *local) size(p int) int {
	pt := l.parts[p]
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	return len(pt.keys)
}

// Stats counts what a node holds.
type Stats struct {
	Keys       int `json:"keys"`       // keys with at least one live record
	Records    int `json:"records"`    // live records
	Tombstones int `json:"tombstones"` // kept but not served: tombstones, expired versions within their horizon
}

func (l *local) stats(now time.Time) Stats {
	var s Stats
	for _, pt := range l.parts {
		pt.mu.RLock()
		for _, e := range pt.keys {
			live := 0
			for _, r := range e.recs {
				switch {
				case r.gone(now):
				case !r.Live(now):
					s.Tombstones++
				default:
					live++
				}
			}
			s.Records += live
			if live > 0 {
				s.Keys++
			}
		}
		pt.mu.RUnlock()
	}
	return s
}

// liveKeys lists the keys with at least one live record.
func (l *local) liveKeys(now time.Time) []string {
	var out []string
	for _, pt := range l.parts {
		pt.mu.RLock()
		for k, e := range pt.keys {
			if slices.ContainsFunc(e.recs, func(r Record) bool { return r.Live(now) }) {
				out = append(out, k)
			}
		}
		pt.mu.RUnlock()
	}
	return out
}
