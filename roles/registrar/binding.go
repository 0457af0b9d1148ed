package registrar

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/sipmesh/sipmesh/internal/cacheline"
)

// Binding is one contact of an AOR: the value of a store record, encoded by
// Encode. The JSON field names are stable: `sipmesh lookup --json` shows
// them (README).
type Binding struct {
	// AOR is the key, "user@domain".
	AOR string `json:"aor"`
	// Contact is the contact URI as the UA registered it.
	Contact string `json:"contact"`
	// Q is the contact's q-value (RFC 3261 §20.10), 1 when absent.
	Q float64 `json:"q"`
	// CallID and CSeq order updates of one binding (RFC 3261 §10.3 step 7).
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// Path is the route set to the UA, outermost first (RFC 3327).
	Path []string `json:"path,omitempty"`
	// Instance and RegID are the RFC 5626 keys when the UA sent them.
	Instance string `json:"instance,omitempty"`
	RegID    int    `json:"reg_id,omitempty"`
	// Received is "transport:ip:port" the REGISTER came from (last hop).
	Received string `json:"received,omitempty"`
	// UserAgent is the User-Agent header field of the REGISTER.
	UserAgent string `json:"user_agent,omitempty"`
	// Node is the node whose registrar wrote the binding.
	Node string `json:"node,omitempty"`
	// ExpiresAt is when the binding expires, Unix seconds.
	ExpiresAt int64 `json:"expires_at"`
}

// Expires is the binding's expiry time.
func (b Binding) Expires() time.Time { return time.Unix(b.ExpiresAt, 0) }

// Record is one item of the replicated store, as the registrar sees it.
type Record struct {
	ID      string
	Value   []byte
	Expires time.Time
	Deleted bool
	// Version is the store's version of the record (0 on writes: the
	// store stamps it).
	Version uint64
}

// Newer is the store's merge rule for registrar records (DESIGN.md: "a
// binding is its own record merged by RFC 3261 rules"): two versions of one
// binding written for the same Call-ID are ordered by CSeq, the higher one
// wins, whatever the order the versions reached a holder in (RFC 3261 §10.3
// step 7: a REGISTER with a lower CSeq is out of order). Versions from
// different Call-IDs (the UA rebooted, or another UA took the contact) are
// not ordered here: the store's version (a hybrid logical clock) decides.
func Newer(a, b Record) bool {
	ca, sa, okA := orderOf(a.Value)
	cb, sb, okB := orderOf(b.Value)
	if okA && okB && len(ca) > 0 && bytes.Equal(ca, cb) && sa != sb {
		return sa > sb
	}
	return a.Version > b.Version
}

// The stored form of a Binding: a format byte, then the Call-ID and CSeq
// (what Newer reads, first so that it reads nothing else), then the other
// fields. Strings are a uvarint length and the octets. A binding is decoded
// for every REGISTER and every merge of a replica; encoding/json took a
// tenth of a node's CPU doing it. Values written as JSON by earlier
// versions are still read.
const bindingFormat = 0xB1

// ErrBadBinding is why a stored value could not be read as a binding.
var ErrBadBinding = errors.New("registrar: unreadable binding")

// Encode returns b's stored form.
func (b Binding) Encode() []byte {
	out, _, _ := b.encode()
	return out
}

// encodeRecord returns b's stored form, and id for a record of it: cut
// from the stored form when it is the contact or the instance, as the
// registrar's IDs mostly are. A record's ID and value are then one
// allocation, one cache miss rather than two when the AOR is read again
// (eachBinding), and the store keeps no string of its own for the ID.
// Like the value, the ID is never modified.
func (b Binding) encodeRecord(id string) ([]byte, string) {
	out, contact, instance := b.encode()
	at := -1
	switch id {
	case b.Contact:
		at = contact
	case b.Instance:
		at = instance
	}
	if at < 0 || id == "" {
		return out, id
	}
	return out, unsafe.String(&out[at], len(id))
}

// encode is Encode, with the offsets of the contact and the instance in
// the stored form.
func (b Binding) encode() (out []byte, contact, instance int) {
	n := 1 + 8*binary.MaxVarintLen64 + 8 + len(b.CallID) + len(b.AOR) + len(b.Contact) + len(b.Instance) + len(b.Received) + len(b.UserAgent) + len(b.Node)
	for _, p := range b.Path {
		n += binary.MaxVarintLen64 + len(p)
	}
	out = make([]byte, 0, n)
	str := func(s string) int {
		out = binary.AppendUvarint(out, uint64(len(s)))
		at := len(out)
		out = append(out, s...)
		return at
	}
	out = append(out, bindingFormat)
	str(b.CallID)
	out = binary.AppendUvarint(out, uint64(b.CSeq))
	str(b.AOR)
	contact = str(b.Contact)
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(b.Q))
	out = binary.AppendUvarint(out, uint64(len(b.Path)))
	for _, p := range b.Path {
		str(p)
	}
	instance = str(b.Instance)
	out = binary.AppendVarint(out, int64(b.RegID))
	str(b.Received)
	str(b.UserAgent)
	str(b.Node)
	out = binary.AppendVarint(out, b.ExpiresAt)
	return out, contact, instance
}

// IsBinding reports whether v is in a binding's stored form.
func IsBinding(v []byte) bool { return len(v) > 0 && v[0] == bindingFormat }

// DecodeBinding reads a stored binding (Encode's form, or JSON).
func DecodeBinding(v []byte) (Binding, error) {
	if !IsBinding(v) {
		return decodeJSONBinding(v)
	}
	return decodeStored(v, string(v), nil)
}

// eachBinding calls fn with every record of recs that is not a tombstone,
// and its binding decoded. The bindings' strings are cut from the values
// in place, and their Paths from one slice: an AOR is read on every
// REGISTER, and copying its values was a fifth of the octets a REGISTER
// allocated. That is sound because nothing modifies a value the store has
// returned (Store.Get).
func eachBinding(recs []Record, paths *pathArena, fn func(rec Record, b Binding, err error)) {
	// Each value and ID is an allocation of its own, seldom still in the
	// cache when its AOR is read again; their misses, one after another
	// in the decoding, were a tenth of a node's CPU at 20,000 REGISTERs a
	// second (perf). Read first, they overlap.
	for _, rec := range recs {
		cacheline.Touch(rec.Value)
		cacheline.TouchString(rec.ID)
	}
	for _, rec := range recs {
		switch {
		case rec.Deleted:
		case !IsBinding(rec.Value):
			b, err := decodeJSONBinding(rec.Value)
			fn(rec, b, err)
		default:
			b, err := decodeStored(rec.Value, unsafe.String(unsafe.SliceData(rec.Value), len(rec.Value)), paths)
			fn(rec, b, err)
		}
	}
}

// decodeStored reads Encode's form v; s holds the same octets, and the
// binding's strings are cut from it. Paths come from arena, when not nil.
func decodeStored(v []byte, s string, arena *pathArena) (Binding, error) {
	var b Binding // on the stack: only the JSON path needs its address
	d := decoder{v: v[1:], s: s[1:]}
	b.CallID = d.str()
	b.CSeq = d.uint32()
	b.AOR = d.str()
	b.Contact = d.str()
	b.Q = math.Float64frombits(d.uint64())
	if n := d.uvarint(); n > 0 && n <= uint64(len(d.v)) {
		b.Path = arena.take(int(n))
		for i := range b.Path {
			b.Path[i] = d.str()
		}
	} else if n > 0 {
		d.bad = true
	}
	b.Instance = d.str()
	b.RegID = int(d.varint())
	b.Received = d.str()
	b.UserAgent = d.str()
	b.Node = d.str()
	b.ExpiresAt = d.varint()
	if d.bad || len(d.v) != 0 {
		return Binding{}, fmt.Errorf("%w: %d octets, malformed", ErrBadBinding, len(v))
	}
	return b, nil
}

// pathArena hands out Path slices of one allocation, sized for hint
// bindings of one Path entry each (a node's edge adds one), or of the
// buffer a reset left for reuse.
type pathArena struct {
	free []string
	hint int
	buf  []string // the last allocation, given out again after reset
}

// take returns a slice of n strings, capped so that appending to it
// cannot reach the next one's.
func (a *pathArena) take(n int) []string {
	if a == nil {
		return make([]string, n)
	}
	if len(a.free) < n {
		a.buf = make([]string, max(n, a.hint, 2*len(a.buf)))
		a.free = a.buf
	}
	out := a.free[:n:n]
	a.free = a.free[n:]
	return out
}

// reset takes back every slice given out, for reuse: their holders must
// be done with them.
func (a *pathArena) reset() {
	clear(a.buf)
	a.free = a.buf
}

func decodeJSONBinding(v []byte) (Binding, error) {
	var b Binding
	if err := json.Unmarshal(v, &b); err != nil {
		return Binding{}, fmt.Errorf("%w: %w", ErrBadBinding, err)
	}
	return b, nil
}

// orderOf reads the Call-ID and CSeq of a stored binding without decoding
// the rest (and without allocating, in the stored form).
func orderOf(v []byte) (callID []byte, cseq uint32, ok bool) {
	if !IsBinding(v) {
		b, err := DecodeBinding(v)
		return []byte(b.CallID), b.CSeq, err == nil
	}
	d := decoder{v: v[1:]}
	callID = d.bytes()
	cseq = d.uint32()
	return callID, cseq, !d.bad
}

// decoder reads the stored form; a short or malformed input sets bad and
// yields zero values from then on. Strings are cut from s, a copy of the
// input made once.
type decoder struct {
	v   []byte
	s   string
	bad bool
}

// A varint is refused unless minimal (no final zero octet), so that one
// binding has one stored form.
func (d *decoder) uvarint() uint64 {
	x, n := binary.Uvarint(d.v)
	if n <= 0 || (n > 1 && d.v[n-1] == 0) {
		d.bad, d.v = true, nil
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *decoder) uint32() uint32 {
	x := d.uvarint()
	if x > math.MaxUint32 {
		d.bad, d.v = true, nil
		return 0
	}
	return uint32(x)
}

func (d *decoder) varint() int64 {
	x, n := binary.Varint(d.v)
	if n <= 0 || (n > 1 && d.v[n-1] == 0) {
		d.bad, d.v = true, nil
		return 0
	}
	d.v = d.v[n:]
	return x
}

func (d *decoder) uint64() uint64 {
	if len(d.v) < 8 {
		d.bad, d.v = true, nil
		return 0
	}
	x := binary.LittleEndian.Uint64(d.v)
	d.v = d.v[8:]
	return x
}

func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if n > uint64(len(d.v)) {
		d.bad, d.v = true, nil
		return nil
	}
	out := d.v[:n:n]
	d.v = d.v[n:]
	return out
}

func (d *decoder) str() string {
	b := d.bytes()
	if len(b) == 0 {
		return ""
	}
	off := len(d.s) - len(d.v) - len(b)
	return d.s[off : off+len(b)]
}
