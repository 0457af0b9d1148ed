package registrar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Store is what the registrar needs of the replicated store.
type Store interface {
	// Put merges records into key (see Newer). It must not keep recs,
	// which the registrar reuses, but may keep their values: each is
	// encoded for the write and never changed after.
	Put(ctx context.Context, key string, recs ...Record) error
	// Get appends key's live records to dst, in ID order, one per ID, as
	// overlay/store keeps them, and returns the extended slice: the
	// registrar neither sorts nor checks them, finds a binding by binary
	// search, and reuses dst from one REGISTER to the next. No one may
	// modify the values it returns, ever (overlay/store's are shared by
	// every reader): the registrar's bindings refer to them in place.
	Get(ctx context.Context, key string, dst []Record) ([]Record, error)
}

// Authenticator verifies digest credentials; *digest.Authenticator is one.
// Verify returns the authenticated user name or a *sipstatus.Error.
type Authenticator interface {
	Verify(ctx context.Context, req *sip.Request, proxy bool) (string, error)
}

// Errors of Register, reachable with errors.Is under the *sipstatus.Error.
var (
	ErrNotOurDomain = errors.New("registrar: the domain is not served here")
	ErrOutOfOrder   = errors.New("registrar: CSeq out of order for the Call-ID")
	ErrForbidden    = errors.New("registrar: authenticated user may not register this AOR")
	ErrLoopContact  = errors.New("registrar: the contact routes back to the AOR")
	ErrNoOutbound   = errors.New("registrar: the first hop did not mark its Path with ob")
)

// Registrar processes REGISTER requests for one domain.
type Registrar struct {
	domain         string
	store          Store
	auth           Authenticator
	node           string
	minExpires     time.Duration
	maxExpires     time.Duration
	defaultExpires time.Duration
	now            func() time.Time
	log            *slog.Logger
	gruuSecret     []byte
	temp           *tempGRUUs // nil: no GRUUs issued
	date           dateHeader
	scratch        sync.Pool // *scratch
}

// Option configures a Registrar.
type Option func(*Registrar)

// WithAuthenticator requires digest authentication of every REGISTER
// (RFC 3261 §10.3 step 3). Without it, REGISTERs are not authenticated.
func WithAuthenticator(a Authenticator) Option { return func(r *Registrar) { r.auth = a } }

// WithExpiry sets the minimum, maximum and default binding lifetimes
// (defaults 60 s, 3600 s, 3600 s).
func WithExpiry(min, max, def time.Duration) Option {
	return func(r *Registrar) {
		if min > 0 {
			r.minExpires = min
		}
		if max > 0 {
			r.maxExpires = max
		}
		if def > 0 {
			r.defaultExpires = def
		}
	}
}

// WithGRUU makes the registrar issue GRUUs (RFC 5627) to UAs that support
// them. secret is the cluster-wide secret temp-gruus are sealed with: every
// node must have the same, so that any node resolves them.
func WithGRUU(secret []byte) Option { return func(r *Registrar) { r.gruuSecret = secret } }

// WithNodeName names the node in the bindings it writes.
func WithNodeName(name string) Option { return func(r *Registrar) { r.node = name } }

// WithClock sets the clock (tests).
func WithClock(now func() time.Time) Option { return func(r *Registrar) { r.now = now } }

// WithLogger sets the logger.
func WithLogger(l *slog.Logger) Option {
	return func(r *Registrar) {
		if l != nil {
			r.log = l
		}
	}
}

// New returns the registrar of domain (the cluster's SIP domain).
func New(domain string, store Store, opts ...Option) (*Registrar, error) {
	if domain == "" || store == nil {
		return nil, errors.New("registrar: a domain and a store are required")
	}
	r := &Registrar{
		domain:         strings.ToLower(domain),
		store:          store,
		minExpires:     60 * time.Second,
		maxExpires:     time.Hour,
		defaultExpires: time.Hour,
		now:            time.Now,
		log:            slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(r)
	}
	if r.minExpires > r.maxExpires {
		return nil, fmt.Errorf("registrar: minimum expiry %v exceeds maximum %v", r.minExpires, r.maxExpires)
	}
	if r.gruuSecret != nil {
		t, err := newTempGRUUs(r.gruuSecret, r.domain)
		if err != nil {
			return nil, err
		}
		r.temp, r.gruuSecret = t, nil
	}
	return r, nil
}

// Domain is the domain the registrar serves.
func (r *Registrar) Domain() string { return r.domain }

// AOR returns the store key of a SIP URI: "user@domain", the user part
// case-sensitive (RFC 3261 §19.1.4), the host lower-cased (the form of
// node.NormalizeKey).
func AOR(u sip.Uri) string {
	return u.User + "@" + strings.ToLower(u.Host)
}

// Lookup returns the live bindings of aor, highest q first.
func (r *Registrar) Lookup(ctx context.Context, aor string) ([]Binding, error) {
	recs, err := r.store.Get(ctx, aor, nil)
	if err != nil {
		return nil, fmt.Errorf("registrar: lookup %s: %w", aor, err)
	}
	now := r.now()
	out := make([]Binding, 0, len(recs))
	eachBinding(recs, &pathArena{hint: len(recs)}, func(rec Record, b Binding, err error) {
		switch {
		case !rec.Expires.IsZero() && !now.Before(rec.Expires):
		case err != nil:
			r.log.Warn("registrar: unreadable binding skipped", "aor", aor, "id", rec.ID, "err", err)
		default:
			out = append(out, b)
		}
	})
	slices.SortStableFunc(out, func(a, b Binding) int {
		switch {
		case a.Q > b.Q:
			return -1
		case a.Q < b.Q:
			return 1
		}
		return strings.Compare(a.Contact, b.Contact)
	})
	return out, nil
}

// Register processes a REGISTER (RFC 3261 §10.3) and returns the 200 OK
// to send, or an error mapping to the final response (sipstatus.Of).
// received is "transport:ip:port" of the hop the request came from.
func (r *Registrar) Register(ctx context.Context, req *sip.Request, received string) (*sip.Response, error) {
	return r.register(ctx, req, received, true)
}

// Reregister is Register for a retransmission, octet for octet, of a
// REGISTER that Register accepted, which the caller has established (the
// edge keeps a hash of each datagram for Timer J): its credentials are not
// verified again, since their nonce count would be refused as a replay
// (RFC 7616 §3.4), and, its Call-ID and CSeq being the ones stored, it
// changes nothing and gets the current bindings (step 7).
func (r *Registrar) Reregister(ctx context.Context, req *sip.Request, received string) (*sip.Response, error) {
	return r.register(ctx, req, received, false)
}

func (r *Registrar) register(ctx context.Context, req *sip.Request, received string, verify bool) (*sip.Response, error) {
	// Step 1: the Request-URI names the domain.
	if !strings.EqualFold(req.Recipient.Host, r.domain) {
		return nil, sipstatus.Forbidden(fmt.Errorf("%w: %s", ErrNotOurDomain, req.Recipient.Host))
	}
	to := req.To()
	if to == nil || to.Address.User == "" {
		return nil, sipstatus.BadRequest("Bad To: no user in the address-of-record", errors.New("registrar: To has no user"))
	}
	if !strings.EqualFold(to.Address.Host, r.domain) {
		return nil, sipstatus.NotFound(fmt.Errorf("%w: AOR %s", ErrNotOurDomain, to.Address.Host))
	}
	aor := AOR(to.Address)
	// Steps 3 and 4: authenticate, then authorise the user for the AOR.
	if r.auth != nil && verify {
		user, err := r.auth.Verify(ctx, req, false)
		if err != nil {
			return nil, err
		}
		if user != to.Address.User {
			return nil, sipstatus.Forbidden(fmt.Errorf("%w: %s for %s", ErrForbidden, user, aor))
		}
	}
	callID := ""
	if c := req.CallID(); c != nil {
		callID = c.Value()
	}
	cseq := req.CSeq()
	if callID == "" || cseq == nil {
		return nil, sipstatus.BadRequest("Missing Call-ID or CSeq", errors.New("registrar: no Call-ID or CSeq"))
	}
	contacts, wildcard, err := contactsOf(req)
	if err != nil {
		return nil, err
	}
	headerExpires, hasHeaderExpires, err := expiresHeader(req)
	if err != nil {
		return nil, err
	}
	now := r.now()

	// The AOR's records, its bindings and the writes go in buffers reused
	// from one REGISTER to the next: for an AOR of a dozen bindings they
	// were a third of the octets a REGISTER allocated.
	sc := r.takeScratch()
	var cur bindingSet
	var writes []Record
	defer func() { r.releaseScratch(sc, cur, writes) }()
	recs, err := r.store.Get(ctx, aor, sc.recs[:0])
	if err != nil {
		return nil, fmt.Errorf("registrar: reading %s: %w", aor, err)
	}
	sc.recs = recs
	cur = slices.Grow(sc.cur[:0], len(recs)+len(contacts))
	eachBinding(recs, &sc.paths, func(rec Record, b Binding, err error) {
		if err != nil {
			return
		}
		// In the store's order, by ID (Store.Get), without comparing the
		// IDs: their octets, one cache miss each in a big store, are
		// then read only by find's binary search.
		cur = append(cur, liveBinding{id: rec.ID, b: b, exp: rec.Expires})
	})
	writes = sc.writes[:0]
	// Step 6: Contact: * with Expires: 0 removes every binding.
	if wildcard {
		if !hasHeaderExpires || headerExpires != 0 {
			return nil, sipstatus.BadRequest("Bad Contact: * needs Expires: 0", errors.New("registrar: wildcard contact without Expires: 0"))
		}
		for _, c := range cur {
			if c.b.CallID == callID && cseq.SeqNo < c.b.CSeq {
				return nil, sipstatus.New(500, "Out-of-order CSeq", fmt.Errorf("%w: %d < %d", ErrOutOfOrder, cseq.SeqNo, c.b.CSeq))
			}
			writes = append(writes, r.tombstone(c.id, c.b, callID, cseq.SeqNo, c.exp))
		}
		cur = cur[:0]
	}
	path := pathOf(req)
	outbound, err := outboundRegistration(req, contacts, path)
	if err != nil {
		return nil, err
	}
	ua := ""
	if h := sipmsg.Header(req, "User-Agent"); h != nil {
		ua = h.Value()
	}
	// Step 7: each contact.
	for _, c := range contacts {
		exp := r.defaultExpires
		if hasHeaderExpires {
			exp = headerExpires
		}
		if v, ok := c.Params.Get("expires"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return nil, sipstatus.BadRequest("Bad Contact expires parameter", fmt.Errorf("registrar: expires=%q: %w", v, err))
			}
			exp = time.Duration(n) * time.Second
		}
		if exp > 0 && exp < r.minExpires {
			return nil, sipstatus.IntervalTooBrief(r.minExpires, fmt.Errorf("registrar: %v is below the minimum %v", exp, r.minExpires))
		}
		if exp > r.maxExpires {
			exp = r.maxExpires
		}
		q := 1.0
		if v, ok := c.Params.Get("q"); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f > 1 || math.IsNaN(f) {
				return nil, sipstatus.BadRequest("Bad Contact q parameter", fmt.Errorf("registrar: q=%q", v))
			}
			q = f
		}
		// RFC 5627 §5.1: a contact that is one of our GRUUs, or the AOR
		// itself, would send requests for the AOR back to it.
		if strings.EqualFold(c.Address.Host, r.domain) && (IsGRUU(c.Address) || AOR(c.Address) == aor) {
			return nil, sipstatus.Forbidden(fmt.Errorf("%w: %s", ErrLoopContact, c.Address.String()))
		}
		uri := uriString(&c.Address)
		b := Binding{AOR: aor, Contact: uri, Q: q, CallID: callID, CSeq: cseq.SeqNo, Path: path,
			Received: received, UserAgent: ua, Node: r.node, ExpiresAt: now.Add(exp).Unix()}
		id := uri
		if inst, ok := c.Params.Get("+sip.instance"); ok && inst != "" {
			b.Instance = strings.Trim(inst, `"`)
			id = b.Instance
			if rid, ok := c.Params.Get("reg-id"); ok {
				b.RegID, _ = strconv.Atoi(rid)
				id += ";reg-id=" + rid
			}
		}
		i := cur.find(id)
		if old := cur.at(i); old != nil && old.b.CallID == callID {
			if cseq.SeqNo < old.b.CSeq {
				return nil, sipstatus.New(500, "Out-of-order CSeq", fmt.Errorf("%w: %d < %d", ErrOutOfOrder, cseq.SeqNo, old.b.CSeq))
			}
			if cseq.SeqNo == old.b.CSeq {
				// The same request again: a retransmission that reached
				// us without a server transaction (the proxy answers
				// REGISTERs statelessly). Like Kamailio's registrar, it
				// changes nothing and gets the current bindings.
				continue
			}
		}
		if exp == 0 {
			if old := cur.at(i); old != nil {
				writes = append(writes, r.tombstone(id, b, callID, cseq.SeqNo, old.exp))
				cur = slices.Delete(cur, i, i+1)
			}
			continue
		}
		val, recID := b.encodeRecord(id)
		writes = append(writes, Record{ID: recID, Value: val, Expires: b.Expires()})
		cur = cur.set(liveBinding{id: id, b: b, exp: b.Expires()})
	}
	if len(writes) > 0 {
		if err := r.store.Put(ctx, aor, writes...); err != nil {
			return nil, fmt.Errorf("registrar: writing %s: %w", aor, err)
		}
	}
	if r.log.Enabled(ctx, slog.LevelDebug) {
		r.log.Debug("registrar: REGISTER", "aor", aor, "changes", len(writes), "bindings", len(cur))
	}

	// Step 8: 200 OK listing every current binding with its expiry.
	res := sipstatus.NewResponse(req, 200, "OK")
	gruu := r.temp != nil && sipmsg.HasOptionTag(req, "Supported", "gruu")
	// One Contact header field listing them all, comma-separated (RFC
	// 3261 §7.3.1), as Kamailio writes it: one allocation, not a header
	// and a string per binding.
	var list strings.Builder
	for i := range cur {
		b := &cur[i].b
		left := b.ExpiresAt - now.Unix()
		if left <= 0 {
			continue
		}
		if list.Len() == 0 {
			list.Grow(len(cur) * (len(b.Contact) + 32 + len(b.Instance)))
		} else {
			list.WriteString(", ")
		}
		r.writeContact(&list, b, left, gruu)
	}
	if list.Len() > 0 {
		res.AppendHeader(sip.NewHeader("Contact", list.String()))
	}
	// RFC 5626 §6: the registrar says it applied outbound; the edge adds
	// Flow-Timer for its flow (§5.4).
	if outbound {
		res.AppendHeader(sip.NewHeader("Require", "outbound"))
	}
	// RFC 3327 §5.3: the registrar returns the Path it stored when the UA
	// said it supports path.
	if sipmsg.HasOptionTag(req, "Supported", "path") {
		for _, p := range path {
			res.AppendHeader(sip.NewHeader("Path", p))
		}
	}
	res.AppendHeader(sip.NewHeader("Date", r.date.format(now)))
	return res, nil
}

// uriString is u.String() written into one buffer sized up front: sipgo's
// String grows its builder part by part, a handful of allocations per
// Contact.
func uriString(u *sip.Uri) string {
	var b strings.Builder
	n := len("sips:@:65535;transport=tcp") + len(u.User) + len(u.Host)
	for _, kv := range u.UriParams {
		n += len(kv.K) + len(kv.V) + 2
	}
	b.Grow(n)
	u.StringWrite(&b)
	return b.String()
}

// writeContact writes the Contact value listing binding b in a 200, with
// its seconds left. It is written from the stored contact, which is the
// URI as sipgo wrote it when the binding was made: parsing it back into a
// sip.ContactHeader to write it out again cost a tenth of a REGISTER's
// time per binding listed (BenchmarkRegister/bindings=10).
func (r *Registrar) writeContact(v *strings.Builder, b *Binding, left int64, gruu bool) {
	var num [20]byte
	v.WriteByte('<')
	v.WriteString(b.Contact)
	v.WriteString(">;expires=")
	v.Write(strconv.AppendInt(num[:0], left, 10))
	if b.Q != 1 {
		v.WriteString(";q=")
		v.Write(strconv.AppendFloat(num[:0], b.Q, 'f', -1, 64))
	}
	if b.Instance != "" {
		v.WriteString(`;+sip.instance="`)
		v.WriteString(b.Instance)
		v.WriteByte('"')
		if b.RegID != 0 {
			v.WriteString(";reg-id=")
			v.Write(strconv.AppendInt(num[:0], int64(b.RegID), 10))
		}
		if gruu {
			r.gruuParams(v, *b)
		}
	}
}

// scratch is the buffers of one Register call. They refer to the store's
// values and are cleared when the call is done, so that a pooled one does
// not keep a value the store has dropped.
type scratch struct {
	recs   []Record
	cur    bindingSet
	writes []Record
	paths  pathArena
}

func (r *Registrar) takeScratch() *scratch {
	if sc, ok := r.scratch.Get().(*scratch); ok {
		return sc
	}
	return &scratch{}
}

// releaseScratch clears sc and pools it, keeping the grown buffers.
func (r *Registrar) releaseScratch(sc *scratch, cur bindingSet, writes []Record) {
	clear(sc.recs)
	sc.cur, sc.writes = cur, writes
	clear(sc.cur)
	clear(sc.writes)
	sc.paths.reset()
	r.scratch.Put(sc)
}

// liveBinding is a binding of the AOR as a REGISTER leaves it.
type liveBinding struct {
	id  string
	b   Binding
	exp time.Time // the stored record's expiry (kept by tombstones)
}

// bindingSet is an AOR's bindings, at most one per id, sorted by id: the
// store's order, which the 200 lists them in.
type bindingSet []liveBinding

// find returns the index of id, or -1.
func (s bindingSet) find(id string) int {
	if i, ok := s.search(id); ok {
		return i
	}
	return -1
}

func (s bindingSet) search(id string) (int, bool) {
	return slices.BinarySearchFunc(s, id, func(c liveBinding, id string) int { return strings.Compare(c.id, id) })
}

// at returns the binding at index i of find, or nil.
func (s bindingSet) at(i int) *liveBinding {
	if i < 0 {
		return nil
	}
	return &s[i]
}

// set adds c in its place, or replaces the binding with its id, and
// returns the set.
func (s bindingSet) set(c liveBinding) bindingSet {
	i, ok := s.search(c.id)
	if ok {
		s[i] = c
		return s
	}
	return slices.Insert(s, i, c)
}

// dateHeader formats the Date header field (RFC 3261 §20.17: RFC 1123
// form, GMT), once a second rather than once a REGISTER.
type dateHeader struct {
	last atomic.Pointer[formattedDate]
}

type formattedDate struct {
	unix int64
	text string
}

func (d *dateHeader) format(now time.Time) string {
	sec := now.Unix()
	if f := d.last.Load(); f != nil && f.unix == sec {
		return f.text
	}
	f := &formattedDate{unix: sec, text: now.UTC().Format(time.RFC1123[:len(time.RFC1123)-3] + "GMT")}
	d.last.Store(f)
	return f.text
}

// tombstone removes a binding; its value keeps the Call-ID and CSeq of the
// request that removed it so that Newer orders it against late versions.
func (r *Registrar) tombstone(id string, b Binding, callID string, cseq uint32, exp time.Time) Record {
	b.CallID, b.CSeq = callID, cseq
	val := b.Encode()
	if exp.IsZero() || exp.Before(r.now()) {
		exp = r.now().Add(r.maxExpires)
	}
	return Record{ID: id, Value: val, Expires: exp, Deleted: true}
}

// contactsOf returns the Contact values, or wildcard when it is "*".
func contactsOf(req *sip.Request) ([]*sip.ContactHeader, bool, error) {
	var out []*sip.ContactHeader
	wildcard := false
	for h := range sipmsg.Headers(req, "Contact") {
		c, ok := h.(*sip.ContactHeader)
		if !ok {
			c = &sip.ContactHeader{}
			if strings.TrimSpace(h.Value()) == "*" {
				c.Address.Wildcard = true
			} else if _, err := sip.ParseAddressValue(h.Value(), &c.Address, &c.Params); err != nil {
				return nil, false, sipstatus.BadRequest("Bad Contact", fmt.Errorf("registrar: contact %q: %w", h.Value(), err))
			}
		}
		if c.Address.Wildcard {
			wildcard = true
			continue
		}
		out = append(out, c)
	}
	if wildcard && len(out) > 0 {
		return nil, false, sipstatus.BadRequest("Bad Contact: * with other contacts", errors.New("registrar: wildcard mixed with contacts"))
	}
	return out, wildcard, nil
}

func expiresHeader(req *sip.Request) (time.Duration, bool, error) {
	h := sipmsg.Header(req, "Expires")
	if h == nil {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(strings.TrimSpace(h.Value()), 10, 32)
	if err != nil {
		return 0, false, sipstatus.BadRequest("Bad Expires", fmt.Errorf("registrar: Expires %q: %w", h.Value(), err))
	}
	return time.Duration(n) * time.Second, true, nil
}

// pathOf returns the Path values of the request, topmost first.
func pathOf(req *sip.Request) []string {
	var out []string
	for h := range sipmsg.Headers(req, "Path") {
		if out == nil {
			out = SplitList(h.Value()) // mostly the one field: no copy
		} else {
			out = append(out, SplitList(h.Value())...)
		}
	}
	return out
}

// outboundRegistration reports whether the REGISTER uses outbound (RFC 5626
// §6): the UA supports it and a contact carries +sip.instance and reg-id.
// The Path entry of the UA's first hop (the last one: each proxy puts its
// own on top, RFC 3327 §4.2) must then carry "ob", else the edge cannot
// keep the flow and the answer is 439.
func outboundRegistration(req *sip.Request, contacts []*sip.ContactHeader, path []string) (bool, error) {
	if !sipmsg.HasOptionTag(req, "Supported", "outbound") {
		return false, nil
	}
	uses := false
	for _, c := range contacts {
		_, inst := c.Params.Get("+sip.instance")
		_, rid := c.Params.Get("reg-id")
		uses = uses || (inst && rid)
	}
	if !uses || len(path) == 0 {
		return uses, nil
	}
	var u sip.Uri
	var params sip.HeaderParams
	if _, err := sip.ParseAddressValue(path[len(path)-1], &u, &params); err != nil {
		return false, sipstatus.BadRequest("Bad Path", fmt.Errorf("registrar: Path %q: %w", path[len(path)-1], err))
	}
	if _, ok := u.UriParams.Get("ob"); !ok {
		return false, sipstatus.FirstHopLacksOutbound(fmt.Errorf("%w: %s", ErrNoOutbound, path[len(path)-1]))
	}
	return true, nil
}

// SplitList splits a header value on the commas that are outside of <>
// and quoted strings (RFC 3261 §7.3.1).
func SplitList(v string) []string {
	var out []string
	depth, quoted, start := 0, false, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '"' && (i == 0 || v[i-1] != '\\'):
			quoted = !quoted
		case quoted:
		case c == '<':
			depth++
		case c == '>':
			depth--
		case c == ',' && depth == 0:
			if s := strings.TrimSpace(v[start:i]); s != "" {
				out = append(out, s)
			}
			start = i + 1
		}
	}
	if s := strings.TrimSpace(v[start:]); s != "" {
		out = append(out, s)
	}
	return out
}
