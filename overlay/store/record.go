package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
)

// Record is one item of a key, e.g. one contact binding of an AOR.
type Record struct {
	// ID names the record within its key; versions of one ID are merged.
	ID string
	// Value is opaque to the store. Do not modify a Value after Put or one
	// returned by the store: Get and Local return the stored octets, shared
	// with every other reader, not a copy.
	Value []byte
	// Version orders versions of a record for the default Merger. Put
	// stamps a zero Version with the coordinator's hybrid logical clock.
	Version uint64
	// Writer is the node that stamped Version (set by Put when empty).
	Writer string
	// Expires is when the record stops existing; zero means never.
	Expires time.Time
	// Deleted marks a tombstone.
	Deleted bool

	// horizon is how long the store remembers this version after Expires:
	// the latest expiry of the versions it superseded, so that none of
	// them can come back from a stale copy (see resolve). Zero: none.
	horizon time.Time
}

// Expired reports whether r has expired at now.
func (r Record) Expired(now time.Time) bool {
	return !r.Expires.IsZero() && !now.Before(r.Expires)
}

// Live reports whether r is served at now: not deleted, not expired.
func (r Record) Live(now time.Time) bool { return !r.Deleted && !r.Expired(now) }

// gone reports whether the store may forget r at now: expired and past its
// horizon. Until then an expired record or a tombstone is kept, unserved,
// to beat stale copies of the versions it superseded.
func (r Record) gone(now time.Time) bool {
	return r.Expired(now) && (r.horizon.IsZero() || !now.Before(r.horizon))
}

// Merger decides which of two versions of one record (same key and ID) is
// kept. It must be deterministic and must not depend on the node it runs
// on, or holders would disagree.
type Merger interface {
	// Newer reports whether a should replace b. When neither is newer
	// than the other, the store's fixed order decides.
	Newer(a, b Record) bool
}

// MergerFunc adapts a function to Merger.
type MergerFunc func(a, b Record) bool

// Newer calls f.
func (f MergerFunc) Newer(a, b Record) bool { return f(a, b) }

// DefaultMerger keeps the higher (Version, Writer).
var DefaultMerger Merger = MergerFunc(func(a, b Record) bool {
	if a.Version != b.Version {
		return a.Version > b.Version
	}
	return a.Writer > b.Writer
})

// wins reports whether a should replace b: the Merger's verdict, then a
// fixed total order, so that equal-by-Merger versions still converge to the
// same bytes on every holder.
func wins(m Merger, a, b Record) bool {
	if m.Newer(a, b) {
		return true
	}
	if m.Newer(b, a) {
		return false
	}
	return order(a, b) > 0
}

func order(a, b Record) int {
	if c := cmp.Compare(a.Version, b.Version); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Writer, b.Writer); c != 0 {
		return c
	}
	if a.Deleted != b.Deleted {
		if a.Deleted {
			return 1
		}
		return -1
	}
	if c := cmp.Compare(expiryKey(a.Expires), expiryKey(b.Expires)); c != 0 {
		return c
	}
	if c := cmp.Compare(unixNano(a.horizon), unixNano(b.horizon)); c != 0 {
		return c
	}
	return bytes.Compare(a.Value, b.Value)
}

// expiryKey orders expiries with "never" last.
func expiryKey(t time.Time) int64 {
	if t.IsZero() {
		return 1<<63 - 1
	}
	return t.UnixNano()
}

// resolve returns the version of a record to keep of cur and in. The winner
// is remembered at least as long as the loser could still exist somewhere
// (its expiry or horizon; TombstoneTTL from now if it never expires): a
// deleted record, or one replaced by a version with a shorter expiry, must
// not come back from a stale copy once the winner expires.
func resolve(m Merger, cur, in Record, now time.Time, ttl time.Duration) Record {
	w, l := cur, in
	if wins(m, in, cur) {
		w, l = in, cur
	}
	if w.Expires.IsZero() {
		return w // never forgotten anyway
	}
	lose := l.Expires
	if lose.IsZero() {
		lose = now.Add(ttl)
	}
	if l.horizon.After(lose) {
		lose = l.horizon
	}
	if lose.After(w.Expires) && lose.After(w.horizon) {
		w.horizon = time.Unix(0, lose.UnixNano())
	}
	return w
}

// normalize strips the monotonic clock and location from Expires so that a
// record compares and hashes the same before and after the wire.
func normalize(r Record) Record {
	if !r.Expires.IsZero() {
		r.Expires = time.Unix(0, r.Expires.UnixNano())
	}
	if !r.horizon.IsZero() {
		r.horizon = time.Unix(0, r.horizon.UnixNano())
	}
	return r
}

// keyDigest hashes a key and its records. Equal copies on two holders have
// equal digests. It is the XOR of the records' digests, so that a write
// rehashes the records it changes rather than all of the key's (an AOR with
// a dozen bindings is written on every REGISTER).
func keyDigest(key string, recs []Record) uint64 {
	var d uint64
	for _, r := range recs {
		d ^= recordDigest(key, r)
	}
	return d
}

// recordDigest hashes one record of key, the key included, so that a
// record moved to another key changes the partition's digest.
func recordDigest(key string, r Record) uint64 {
	d := xxhash.New()
	var buf [8]byte
	d.WriteString(key)
	d.Write([]byte{0})
	d.WriteString(r.ID)
	d.Write([]byte{0})
	binary.BigEndian.PutUint64(buf[:], r.Version)
	d.Write(buf[:])
	d.WriteString(r.Writer)
	d.Write([]byte{0})
	if r.Deleted {
		d.Write([]byte{1})
	} else {
		d.Write([]byte{0})
	}
	binary.BigEndian.PutUint64(buf[:], uint64(unixNano(r.Expires)))
	d.Write(buf[:])
	binary.BigEndian.PutUint64(buf[:], uint64(unixNano(r.horizon)))
	d.Write(buf[:])
	binary.BigEndian.PutUint64(buf[:], uint64(len(r.Value)))
	d.Write(buf[:])
	d.Write(r.Value)
	return d.Sum64()
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func toPB(r Record) *meshpb.Record {
	return &meshpb.Record{Id: r.ID, Value: r.Value, Version: r.Version, Writer: r.Writer, ExpiresUnixNano: unixNano(r.Expires), Deleted: r.Deleted, HorizonUnixNano: unixNano(r.horizon)}
}

func fromPB(p *meshpb.Record) Record {
	r := Record{ID: p.GetId(), Value: p.GetValue(), Version: p.GetVersion(), Writer: p.GetWriter(), Deleted: p.GetDeleted()}
	if n := p.GetExpiresUnixNano(); n != 0 {
		r.Expires = time.Unix(0, n)
	}
	if n := p.GetHorizonUnixNano(); n != 0 {
		r.horizon = time.Unix(0, n)
	}
	return r
}

func entryToPB(key string, recs []Record) *meshpb.Entry {
	e := &meshpb.Entry{Key: key, Records: make([]*meshpb.Record, len(recs))}
	for i, r := range recs {
		e.Records[i] = toPB(r)
	}
	return e
}

func recordsFromPB(ps []*meshpb.Record) []Record {
	out := make([]Record, 0, len(ps))
	for _, p := range ps {
		if p != nil {
			out = append(out, fromPB(p))
		}
	}
	return out
}

// entrySize estimates an entry's encoded size, for batching.
func entrySize(key string, recs []Record) int {
	n := len(key) + 8
	for _, r := range recs {
		n += len(r.ID) + len(r.Value) + len(r.Writer) + 32
	}
	return n
}

// hlc is a hybrid logical clock: milliseconds of wall time in the high 48
// bits, a counter in the low 16. Versions it issues grow strictly and stay
// above every version it has observed, so a node's write supersedes what it
// read even when its wall clock lags the writer's.
type hlc struct {
	// last is the highest version issued or observed. Lock-free: every
	// write of every reader goroutine takes a version, and a mutex here
	// was contended at 20,000 REGISTERs a second.
	last atomic.Uint64
}

// nextAt issues a version for a write made at now (the caller reads the
// clock once for a whole write).
func (c *hlc) nextAt(now time.Time) uint64 {
	pt := uint64(now.UnixMilli()) << 16
	for {
		last := c.last.Load()
		v := max(pt, last+1)
		if c.last.CompareAndSwap(last, v) {
			return v
		}
	}
}

func (c *hlc) observe(v uint64) {
	for {
		last := c.last.Load()
		if v <= last || c.last.CompareAndSwap(last, v) {
			return
		}
	}
}
