package proxy

import (
	"hash/maphash"
	"strconv"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"
)

// recent remembers keys for at least span: two generations of maps, the
// older dropped whole, so that nothing is swept one by one. The stateless
// paths use it where a transaction would hold a whole message for a
// timer's length.
type recent[V any] struct {
	mu        sync.Mutex
	span      time.Duration
	rotated   time.Time
	cur, prev map[uint64]V
}

func newRecent[V any](span time.Duration) *recent[V] {
	return &recent[V]{span: span, rotated: time.Now(), cur: map[uint64]V{}, prev: map[uint64]V{}}
}

func (c *recent[V]) rotate(now time.Time) {
	age := now.Sub(c.rotated)
	if age < c.span {
		return
	}
	if age >= 2*c.span { // idle for two spans: both generations are old
		c.cur = map[uint64]V{}
	}
	// The new generation grows as it fills, a table at a time: some 100
	// ns more a key, a fraction of a percent of a REGISTER's CPU. Sized at
	// once for what the last one held, it was made under the lock that
	// every REGISTER with credentials takes: 19 ms for the 512,000 keys
	// of 16,000 REGISTER-auth/s (BenchmarkRecentRotation), every Timer J.
	c.prev, c.cur, c.rotated = c.cur, map[uint64]V{}, now
}

// reserve returns what key holds and whether it was seen; when it was
// not, key now holds v.
func (c *recent[V]) reserve(key uint64, v V) (got V, seen bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate(time.Now())
	if got, ok := c.cur[key]; ok {
		return got, true
	}
	if got, ok := c.prev[key]; ok {
		return got, true
	}
	c.cur[key] = v
	return v, false
}

// seen reports whether key is remembered.
func (c *recent[V]) seen(key uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate(time.Now())
	_, inCur := c.cur[key]
	_, inPrev := c.prev[key]
	return inCur || inPrev
}

func (c *recent[V]) put(key uint64, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rotate(time.Now())
	delete(c.prev, key)
	c.cur[key] = v
}

func (c *recent[V]) forget(key uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.cur, key)
	delete(c.prev, key)
}

// requestKey identifies a request and its retransmissions from one source: the
// transaction key of RFC 3261 §17.2.3 (branch, sent-by, method), with the
// Call-ID, From tag and CSeq for clients that do not follow it.
func requestKey(seed maphash.Seed, src string, req *sip.Request) uint64 {
	var h maphash.Hash
	h.SetSeed(seed)
	h.WriteString(src)
	// Piece by piece, each after a separator: joining them first was
	// four strings allocated per REGISTER.
	field := func(v string) { h.WriteByte(0); h.WriteString(v) }
	var num [20]byte
	if v := req.Via(); v != nil {
		b, _ := v.Params.Get("branch")
		field(b)
		field(v.Host)
		h.WriteByte(':')
		h.Write(strconv.AppendInt(num[:0], int64(v.Port), 10))
	}
	if c := req.CallID(); c != nil {
		field(c.Value())
	}
	if f := req.From(); f != nil {
		t, _ := f.Params.Get("tag")
		field(t)
	}
	if c := req.CSeq(); c != nil {
		h.WriteByte(0)
		h.Write(strconv.AppendUint(num[:0], uint64(c.SeqNo), 10))
		h.WriteString(string(c.MethodName))
	}
	return h.Sum64()
}
