package dnsprov

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/ring"
)

// Updater keeps this node's share of the cluster's records in a primary
// DNS server with TSIG-signed RFC 2136 updates (ownership rules in the
// package doc).
type Updater struct {
	cfg    Config
	rc     RFC2136Config
	zone   string // FQDN of the zone updated
	origin string // FQDN of the cluster
	src    Membership
	log    *slog.Logger
	cl     *client
	start  time.Time
	nonce  string

	mu        sync.Mutex // one pass at a time; guards the fields below
	deadSince map[string]time.Time
	seenDead  map[string]bool
	knownDCs  map[string]bool
	published []Record
	left      bool
	ring      *ring.Ring
	ringKey   string

	runMu  sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}

	passes, updates, failures, conflicts, deadRemoved atomic.Uint64
	lastErr                                           atomic.Pointer[string]
}

// UpdaterStats counts what an Updater did. JSON names are stable.
type UpdaterStats struct {
	Passes      uint64 `json:"passes"`       // synchronisation passes run
	Updates     uint64 `json:"updates"`      // update messages the server accepted
	Failures    uint64 `json:"failures"`     // passes that ended in an error
	Conflicts   uint64 `json:"conflicts"`    // updates refused because a prerequisite no longer held
	DeadRemoved uint64 `json:"dead_removed"` // dead nodes whose records this node removed
	LastError   string `json:"last_error,omitempty"`
}

// NewUpdater checks cfg.RFC2136 and loads its key; Start begins updating.
func NewUpdater(cfg Config, src Membership, log *slog.Logger) (*Updater, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	rc := cfg.RFC2136
	if rc.Server == "" {
		return nil, errors.New("dnsprov: dns.rfc2136.server is empty: name the primary DNS server to update")
	}
	origin := cfg.Cluster + "."
	zone := dns.Fqdn(strings.ToLower(strings.TrimSpace(rc.Zone)))
	if zone == "." && strings.TrimSpace(rc.Zone) == "" {
		zone = origin
	}
	if !dns.IsSubDomain(zone, origin) {
		return nil, fmt.Errorf("dnsprov: cluster %s is not inside dns.rfc2136.zone %s: the zone must be the cluster domain or a parent of it", origin, zone)
	}
	key, err := loadKey(rc)
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var n [4]byte
	_, _ = rand.Read(n[:])
	server := hostPortDefault(rc.Server, "53")
	u := &Updater{
		cfg: cfg, rc: rc, zone: zone, origin: origin, src: src,
		log:   log.With("component", "dnsprov", "dns_server", server, "zone", zone),
		cl:    &client{server: server, net: "tcp", timeout: rc.Timeout, key: key, now: cfg.Now, keep: true},
		start: cfg.Now(), nonce: hex.EncodeToString(n[:]),
		deadSince: map[string]time.Time{}, seenDead: map[string]bool{}, knownDCs: map[string]bool{},
	}
	return u, nil
}

// Start runs the update loop in the background: a pass now, after every
// membership change and every Resync interval, failed passes retried with
// exponential backoff.
func (u *Updater) Start() {
	u.runMu.Lock()
	defer u.runMu.Unlock()
	if u.done != nil {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	u.cancel, u.done = cancel, make(chan struct{})
	ch, unsubscribe := u.src.Subscribe()
	go func() {
		defer close(u.done)
		defer unsubscribe()
		u.loop(ctx, ch)
	}()
}

// Close stops the loop and leaves the records in place (a crash looks the
// same to the survivors, who then remove them).
func (u *Updater) Close() {
	u.runMu.Lock()
	defer u.runMu.Unlock()
	if u.cancel != nil {
		u.cancel()
		<-u.done
		u.cancel = nil
	}
	u.mu.Lock()
	u.cl.close()
	u.mu.Unlock()
}

// Leave stops the loop and deletes this node's own records, retrying until
// ctx ends; call it on graceful shutdown, before leaving the overlay.
func (u *Updater) Leave(ctx context.Context) error {
	u.Close()
	delay := u.rc.RetryMin
	for {
		err := u.removeOwn(ctx)
		if err == nil {
			u.mu.Lock()
			u.cl.close()
			u.mu.Unlock()
			return nil
		}
		u.logFailure(err, delay)
		select {
		case <-ctx.Done():
			return fmt.Errorf("dnsprov: leave: records of this node may remain until a survivor removes them: %w", err)
		case <-time.After(delay):
		}
		delay = min(2*delay, u.rc.RetryMax)
	}
}

// Stats returns the counters.
func (u *Updater) Stats() UpdaterStats {
	s := UpdaterStats{
		Passes: u.passes.Load(), Updates: u.updates.Load(), Failures: u.failures.Load(),
		Conflicts: u.conflicts.Load(), DeadRemoved: u.deadRemoved.Load(),
	}
	if e := u.lastErr.Load(); e != nil {
		s.LastError = *e
	}
	return s
}

// Published is what this node maintains in the zone after its last
// successful pass: its own records, and the NAPTR sets while it is their
// maintainer.
func (u *Updater) Published() []Record {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.published)
}

func (u *Updater) loop(ctx context.Context, changes <-chan struct{}) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	fails := 0
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				changes = nil // subscription ended; keep resyncing on the timer
				continue
			}
			if fails > 0 {
				continue // the backoff timer decides when to try again
			}
		case <-timer.C:
		}
		next := u.rc.Resync
		if err := u.Sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			fails++
			next = backoff(u.rc.RetryMin, u.rc.RetryMax, fails)
			u.logFailure(err, next)
		} else {
			if fails > 0 {
				u.log.Info("dnsprov: DNS updates succeed again", "after_failures", fails)
			}
			fails = 0
		}
		timer.Reset(next)
	}
}

// backoff is min·2^(n-1) capped at max, ±20% jitter so survivors of one
// event do not retry in lockstep.
func backoff(lo, hi time.Duration, n int) time.Duration {
	d := lo
	for i := 1; i < n && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	return time.Duration(float64(d) * (0.8 + 0.4*mrand.Float64()))
}

func (u *Updater) logFailure(err error, retry time.Duration) {
	var rc *RcodeError
	if errors.As(err, &rc) && rc.KeyRefused() {
		u.log.Error("dnsprov: the DNS server refused the TSIG key; records are not being published",
			"rcode", RcodeName(rc.Rcode), "tsig_error", RcodeName(rc.TSIGErr), "key", u.cl.key.name,
			"hint", "check dns.rfc2136 key_name, key_file and algorithm against the server's key and its update-policy",
			"retry_in", retry.Round(time.Millisecond).String(), "err", err)
		return
	}
	attrs := []any{"retry_in", retry.Round(time.Millisecond).String(), "err", err}
	if rc != nil {
		attrs = append(attrs, "rcode", RcodeName(rc.Rcode))
	}
	u.log.Warn("dnsprov: RFC 2136 update pass failed", attrs...)
}

// Sync runs one pass now: re-reads the records concerned and sends the
// updates needed. A pass that loses a race with another updater (a
// prerequisite failed) is repeated at once, up to three times.
func (u *Updater) Sync(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.left {
		return nil
	}
	var err error
	for range 3 {
		u.passes.Add(1)
		err = u.pass(ctx)
		var rc *RcodeError
		if errors.As(err, &rc) && rc.Conflict() {
			u.conflicts.Add(1)
			u.log.Info("dnsprov: another updater changed the records first; re-reading", "err", err)
			continue
		}
		break
	}
	if err != nil {
		u.failures.Add(1)
		s := err.Error()
		u.lastErr.Store(&s)
	}
	return err
}

// marker is the TXT RDATA by which a node claims its records; start tells
// survivors whether the records predate the death they saw.
func (u *Updater) marker(self string) string {
	return fmt.Sprintf(`"sipmesh node=%s start=%d id=%s"`, self, u.start.UnixNano(), u.nonce)
}

// markerStart parses a marker TXT; ok false when txt is not ours.
func markerStart(rr dns.RR) (time.Time, bool) {
	t, ok := rr.(*dns.TXT)
	if !ok || len(t.Txt) != 1 || !strings.HasPrefix(t.Txt[0], "sipmesh ") {
		return time.Time{}, false
	}
	for _, f := range strings.Fields(t.Txt[0]) {
		if v, ok := strings.CutPrefix(f, "start="); ok {
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				return time.Unix(0, n), true
			}
		}
	}
	return time.Time{}, false
}

// snapshot is what was read from the server in one pass.
type snapshot struct {
	sets map[string][]dns.RR // lower(name)+" "+TYPE
}

func setKey(name string, t uint16) string {
	return strings.ToLower(dns.Fqdn(name)) + " " + dns.TypeToString[t]
}

func (s *snapshot) get(name string, t uint16) []dns.RR { return s.sets[setKey(name, t)] }

// checkKey asks for the zone's SOA with TSIG: every pass proves the key
// is still accepted (and the server authoritative for the zone) even when
// there is nothing to update. The other reads are unsigned: they are
// cheaper by two thirds, and a forged answer could only make an update
// (which is signed, and deletes only exact RRs) add or remove nothing.
func (u *Updater) checkKey(ctx context.Context) error {
	soa, r, err := u.cl.signedQuery(ctx, u.zone, dns.TypeSOA)
	if err != nil {
		return err
	}
	if !r.Authoritative || len(soa) == 0 {
		return fmt.Errorf("dnsprov: %s is not authoritative for zone %s: point dns.rfc2136.server at the zone's primary and dns.rfc2136.zone at the zone", u.cl.server, u.zone)
	}
	return nil
}

// read fetches the sets of qs not read yet, in one pipelined batch.
func (u *Updater) read(ctx context.Context, s *snapshot, qs ...question) error {
	var todo []question
	seen := map[string]bool{}
	for _, q := range qs {
		k := setKey(q.name, q.qtype)
		if _, ok := s.sets[k]; !ok && !seen[k] {
			todo = append(todo, q)
			seen[k] = true
		}
	}
	sets, err := u.cl.batch(ctx, todo)
	if err != nil {
		return err
	}
	for i, q := range todo {
		s.sets[setKey(q.name, q.qtype)] = sets[i]
	}
	return nil
}

// readServices reads the SRV sets of names.
func (u *Updater) readServices(ctx context.Context, s *snapshot, names []string) error {
	qs := make([]question, len(names))
	for i, n := range names {
		qs[i] = question{n, dns.TypeSRV}
	}
	return u.read(ctx, s, qs...)
}

// serviceNames are the SRV owner names sipmesh publishes under: the seeds
// and every transport at the cluster and at each known datacenter.
func (u *Updater) serviceNames() []string {
	names := []string{seedPrefix + "." + u.origin}
	prefixes := []string{u.origin}
	if u.cfg.PerDatacenter {
		for _, dc := range sortedKeys(u.knownDCs) {
			prefixes = append(prefixes, dc+"."+u.origin)
		}
	}
	for _, p := range prefixes {
		for _, t := range transports() {
			names = append(names, t.srv+"."+p)
		}
	}
	return names
}

func (u *Updater) naptrNames() []string {
	names := []string{u.origin}
	if u.cfg.PerDatacenter {
		for _, dc := range sortedKeys(u.knownDCs) {
			names = append(names, dc+"."+u.origin)
		}
	}
	return names
}

// nodeOf returns the node a name under the cluster belongs to:
// <node>.C or <service>.<node>.C.
func (u *Updater) nodeOf(name string) (string, bool) {
	rest, ok := strings.CutSuffix(strings.ToLower(dns.Fqdn(name)), "."+u.origin)
	if !ok || rest == "" {
		return "", false
	}
	labels := strings.Split(rest, ".")
	if len(labels) > 2 {
		return "", false
	}
	n := labels[len(labels)-1]
	return n, validLabel(n)
}

// owned returns the RRs in s that belong to node: SRVs pointing at its
// names, its addresses, its marker(s). Only sipmesh markers count among
// TXT records, so a TXT someone else put at the name is never touched.
func (u *Updater) owned(s *snapshot, node string, serviceNames []string) (rrs []dns.RR, names []string) {
	names = []string{node + "." + u.origin}
	for _, n := range serviceNames {
		for _, rr := range s.get(n, dns.TypeSRV) {
			t := strings.ToLower(rr.(*dns.SRV).Target)
			if x, ok := u.nodeOf(t); ok && x == node {
				rrs = append(rrs, rr)
				if !slices.Contains(names, t) {
					names = append(names, t)
				}
			}
		}
	}
	for _, n := range names {
		rrs = append(rrs, s.get(n, dns.TypeA)...)
		rrs = append(rrs, s.get(n, dns.TypeAAAA)...)
	}
	for _, rr := range s.get(names[0], dns.TypeTXT) {
		if _, ok := markerStart(rr); ok {
			rrs = append(rrs, rr)
		}
	}
	return rrs, names
}

// readNode reads the address and marker sets of node's names.
func (u *Updater) readNode(ctx context.Context, s *snapshot, node string, serviceNames []string, extra ...string) error {
	_, names := u.owned(s, node, serviceNames)
	qs := []question{{node + "." + u.origin, dns.TypeTXT}}
	for _, n := range append(names, extra...) {
		qs = append(qs, question{n, dns.TypeA}, question{n, dns.TypeAAAA})
	}
	return u.read(ctx, s, qs...)
}

// pass reads and updates once. Caller holds u.mu.
func (u *Updater) pass(ctx context.Context) error {
	now := u.cfg.Now()
	self := u.src.Self()
	if !validLabel(self.Name) {
		return fmt.Errorf("dnsprov: node name %q cannot be published in DNS", self.Name)
	}
	self.State = overlay.StateAlive // we are running, whatever gossip says
	members := withSelfForced(u.src.Members(), self)
	byName := map[string]overlay.Member{}
	for _, m := range members {
		byName[m.Name] = m
		if validLabel(m.Datacenter) {
			u.knownDCs[m.Datacenter] = true
		}
		switch m.State {
		case overlay.StateAlive, overlay.StateSuspect:
			delete(u.deadSince, m.Name)
			delete(u.seenDead, m.Name)
		default:
			if !u.seenDead[m.Name] {
				u.deadSince[m.Name], u.seenDead[m.Name] = now, true
			}
		}
	}
	rg := u.ringOf(aliveMembers(members))
	mine := func(key string) bool { o, ok := rg.Owner(key); return ok && o.Name == self.Name }

	recs, err := Build(u.cfg, members, Perspective{})
	if err != nil {
		return err
	}

	if err := u.checkKey(ctx); err != nil {
		return err
	}
	s := &snapshot{sets: map[string][]dns.RR{}}
	svc := u.serviceNames()
	if err := u.readServices(ctx, s, svc); err != nil {
		return err
	}

	// Own records.
	var desired []dns.RR
	var extraNames []string
	for _, r := range recs {
		if r.Node != self.Name {
			continue
		}
		rr, err := toRR(r)
		if err != nil {
			return err
		}
		desired = append(desired, rr)
		if x, ok := u.nodeOf(r.Name); ok && x == self.Name {
			extraNames = append(extraNames, r.Name)
		}
	}
	mk, err := toRR(Record{Name: self.Name + "." + u.origin, Type: "TXT", TTL: uint32(max(1, u.cfg.TTL/time.Second)), Data: u.marker(self.Name)})
	if err != nil {
		return err
	}
	desired = append(desired, mk)
	if err := u.readNode(ctx, s, self.Name, svc, extraNames...); err != nil {
		return err
	}
	present, _ := u.owned(s, self.Name, svc)
	adds, dels := diff(desired, present)
	if len(adds)+len(dels) > 0 {
		if err := u.update(ctx, "records of "+self.Name, nil, dels, adds); err != nil {
			return err
		}
		u.log.Info("dnsprov: published own records", "added", len(adds), "removed", len(dels))
	}
	published := desired

	// NAPTR sets, by the owner of the cluster name.
	if mine(u.origin) {
		want := map[string][]dns.RR{}
		for _, r := range recs {
			if r.Type == "NAPTR" {
				rr, err := toRR(r)
				if err != nil {
					return err
				}
				want[r.Name] = append(want[r.Name], rr)
				published = append(published, rr)
			}
		}
		ours := map[string]bool{}
		for _, n := range svc {
			ours[strings.ToLower(n)] = true
		}
		m := u.newUpdate()
		changed := 0
		var qs []question
		for _, name := range u.naptrNames() {
			qs = append(qs, question{name, dns.TypeNAPTR})
		}
		if err := u.read(ctx, s, qs...); err != nil {
			return err
		}
		for _, name := range u.naptrNames() {
			have := s.get(name, dns.TypeNAPTR)
			var mineNow []dns.RR
			for _, rr := range have {
				if ours[strings.ToLower(rr.(*dns.NAPTR).Replacement)] {
					mineNow = append(mineNow, rr)
				}
			}
			adds, dels := diff(want[name], mineNow)
			if len(adds)+len(dels) == 0 {
				continue
			}
			// RFC 2136 §2.4.2/§2.4.3: apply only to the set we just read.
			if len(have) == 0 {
				m.RRsetNotUsed([]dns.RR{&dns.NAPTR{Hdr: dns.RR_Header{Name: name, Rrtype: dns.TypeNAPTR}}})
			} else {
				m.Used(copyRRs(have))
			}
			if len(dels) > 0 {
				m.Remove(copyRRs(dels))
			}
			if len(adds) > 0 {
				m.Insert(copyRRs(adds))
			}
			changed += len(adds) + len(dels)
		}
		if changed > 0 {
			if _, err := u.cl.exchange(ctx, m, "update NAPTR of "+u.origin); err != nil {
				return err
			}
			u.updates.Add(1)
			u.log.Info("dnsprov: updated NAPTR records", "changes", changed)
		}
	}

	// Records of dead nodes whose name this node owns on the ring of the
	// alive ones; candidates are dead members and nodes found in SRV sets.
	cands := map[string]bool{}
	for _, m := range members {
		cands[m.Name] = true
	}
	for _, n := range svc {
		for _, rr := range s.get(n, dns.TypeSRV) {
			if x, ok := u.nodeOf(rr.(*dns.SRV).Target); ok {
				cands[x] = true
			}
		}
	}
	for x := range u.deadSince {
		if !cands[x] { // gone from membership and zone: nothing left to do
			delete(u.deadSince, x)
			delete(u.seenDead, x)
		}
	}
	var errs []error
	for _, x := range sortedKeys(cands) {
		m, member := byName[x]
		if x == self.Name || (member && (m.State == overlay.StateAlive || m.State == overlay.StateSuspect)) || !validLabel(x) {
			continue
		}
		if _, ok := u.deadSince[x]; !ok {
			u.deadSince[x] = now // an orphan: in the zone, not in the membership
		}
		if !mine(x) {
			continue
		}
		if err := u.removeDead(ctx, s, x, member, svc, now); err != nil {
			var rc *RcodeError
			if errors.As(err, &rc) && rc.Conflict() {
				return err
			}
			errs = append(errs, err)
		}
	}
	u.published = recordsOf(published)
	return errors.Join(errs...)
}

// ringOf returns the ring of the alive members, rebuilt only when they
// change (building one costs more than a pass's reads).
func (u *Updater) ringOf(alive []overlay.Member) *ring.Ring {
	var key strings.Builder
	nodes := make([]ring.Node, len(alive))
	for i, m := range alive {
		nodes[i] = ring.Node{Name: m.Name, Datacenter: m.Datacenter}
		key.WriteString(m.Name + "/" + m.Datacenter + " ")
	}
	if u.ring == nil || u.ringKey != key.String() {
		u.ring, u.ringKey = ring.New(nodes, 0), key.String()
	}
	return u.ring
}

// removeDead deletes the records of node x if the rules allow it yet.
func (u *Updater) removeDead(ctx context.Context, s *snapshot, x string, member bool, svc []string, now time.Time) error {
	if err := u.readNode(ctx, s, x, svc); err != nil {
		return err
	}
	rrs, _ := u.owned(s, x, svc)
	if len(rrs) == 0 {
		if !member {
			delete(u.deadSince, x)
			delete(u.seenDead, x)
		}
		return nil
	}
	var start time.Time
	hasMarker := false
	for _, rr := range s.get(x+"."+u.origin, dns.TypeTXT) {
		if t, ok := markerStart(rr); ok {
			hasMarker = true
			if t.After(start) {
				start = t
			}
		}
	}
	since := u.deadSince[x]
	grace := now.Sub(since) >= u.rc.OrphanGrace
	var allowed bool
	if u.seenDead[x] {
		// The membership said dead or left. Records written by a process
		// started after that belong to a new life of the node.
		allowed = !hasMarker || start.Before(since) || grace
	} else {
		// Never seen in our membership: only ours if marked, and only once
		// it had time to show up in the gossip.
		allowed = hasMarker && grace
	}
	if !allowed {
		u.log.Debug("dnsprov: not removing records of absent node yet", "absent_node", x, "marker_start", start, "absent_since", since)
		return nil
	}
	var pre func(m *dns.Msg)
	if txt := s.get(x+"."+u.origin, dns.TypeTXT); hasMarker {
		pre = func(m *dns.Msg) { m.Used(copyRRs(txt)) }
	} else if a := s.get(x+"."+u.origin, dns.TypeA); len(a) > 0 {
		pre = func(m *dns.Msg) { m.Used(copyRRs(a)) }
	}
	if err := u.update(ctx, "removal of dead node "+x, pre, rrs, nil); err != nil {
		return err
	}
	u.deadRemoved.Add(1)
	u.log.Info("dnsprov: removed records of dead node", "dead_node", x, "records", len(rrs))
	return nil
}

// removeOwn deletes every record of this node (graceful leave).
func (u *Updater) removeOwn(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	self := u.src.Self()
	for _, m := range u.src.Members() {
		if validLabel(m.Datacenter) {
			u.knownDCs[m.Datacenter] = true
		}
	}
	if validLabel(self.Datacenter) {
		u.knownDCs[self.Datacenter] = true
	}
	if err := u.checkKey(ctx); err != nil {
		return err
	}
	s := &snapshot{sets: map[string][]dns.RR{}}
	svc := u.serviceNames()
	if err := u.readServices(ctx, s, svc); err != nil {
		return err
	}
	if err := u.readNode(ctx, s, self.Name, svc); err != nil {
		return err
	}
	rrs, _ := u.owned(s, self.Name, svc)
	u.left = true
	u.published = nil
	if len(rrs) == 0 {
		return nil
	}
	if err := u.update(ctx, "removal of "+self.Name+" on leave", nil, rrs, nil); err != nil {
		u.left = false
		return err
	}
	u.log.Info("dnsprov: removed own records on leave", "records", len(rrs))
	return nil
}

func (u *Updater) newUpdate() *dns.Msg {
	m := new(dns.Msg)
	m.SetUpdate(u.zone)
	return m
}

// update sends one update: prerequisites, then deletes of specific RRs
// (RFC 2136 §2.5.4), then adds (§2.5.1).
func (u *Updater) update(ctx context.Context, what string, pre func(*dns.Msg), dels, adds []dns.RR) error {
	m := u.newUpdate()
	if pre != nil {
		pre(m)
	}
	if len(dels) > 0 {
		m.Remove(copyRRs(dels))
	}
	if len(adds) > 0 {
		m.Insert(copyRRs(adds))
	}
	if _, err := u.cl.exchange(ctx, m, "update ("+what+")"); err != nil {
		return err
	}
	u.updates.Add(1)
	return nil
}

// diff returns the RRs of want missing from have (or with another TTL) and
// those of have not in want.
func diff(want, have []dns.RR) (adds, dels []dns.RR) {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h dns.RR) bool { return sameRR(w, h) && w.Header().Ttl == h.Header().Ttl }) {
			adds = append(adds, w)
		}
	}
	for _, h := range have {
		if !slices.ContainsFunc(want, func(w dns.RR) bool { return sameRR(w, h) }) {
			dels = append(dels, h)
		}
	}
	return adds, dels
}

// copyRRs copies, because the update helpers rewrite class and TTL in place.
func copyRRs(rrs []dns.RR) []dns.RR {
	out := make([]dns.RR, len(rrs))
	for i, rr := range rrs {
		out[i] = dns.Copy(rr)
	}
	return out
}

func recordsOf(rrs []dns.RR) []Record {
	out := make([]Record, len(rrs))
	for i, rr := range rrs {
		out[i] = fromRR(rr)
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// withSelfForced returns members with self replacing any entry of its name.
func withSelfForced(members []overlay.Member, self overlay.Member) []overlay.Member {
	out := make([]overlay.Member, 0, len(members)+1)
	for _, m := range members {
		if m.Name != self.Name {
			out = append(out, m)
		}
	}
	return append(out, self)
}
