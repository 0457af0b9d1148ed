package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay/ring"
	"github.com/sipmesh/sipmesh/roles/proxy"
	"github.com/sipmesh/sipmesh/roles/relay"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Bounds of the media control path.
const (
	// relayAttemptTimeout bounds one Allocate on one relay; then the next
	// relay of the ring is tried (within the proxy's own bound).
	relayAttemptTimeout = 2 * time.Second
	// relayFailMemory is how long a relay that failed is tried last, so
	// that calls do not each wait for a relay that just died while the
	// mesh has not yet declared it dead.
	relayFailMemory = 10 * time.Second
	// noRelayLogEvery bounds the warning about a mesh without relays.
	noRelayLogEvery = time.Minute
	// lostGrace is how long a call whose relay died is remembered, so that
	// a re-offer (re-INVITE, UPDATE, a session refresh) moves its media to
	// another relay; after it, the call is forgotten as if it had ended.
	lostGrace = time.Hour
)

// mediaSession is the relay session of one call this node anchors.
type mediaSession struct {
	relay string // node name
	al    relay.Allocation
	// peers are the last addresses each party advertised, per stream, so
	// that a session lost with its relay is allocated again with both.
	peers     []relay.StreamSpec
	allocated time.Time
	// lost is when the session was found gone with its relay (dead, or
	// restarted without it); zero while it lives.
	lost time.Time
}

// relayMedia is the proxy's Media on this node (roles/proxy: the proxy
// must not import the relay role nor the overlay): it picks the relay of a
// call on the relay ring by Call-ID, this node's datacenter first, drives
// it through a relay.Controller (the local *relay.Relay, or a
// relay.Remote over the overlay RPC), rewrites SDP with relay.RewriteSDP,
// and tells the proxy when a relay ended a session on its own.
type relayMedia struct {
	mode  relay.Mode
	self  string // this node's name
	dc    string // this node's datacenter
	local *relay.Relay
	conns relay.Conns
	// relays lists the relay ring's nodes for a key: owner first, then
	// other datacenters first, as ring.Replicas orders them.
	relays func(key string) []ring.Node
	// ctl, when set, replaces controller's choice (tests).
	ctl func(node string) relay.Controller
	log *slog.Logger

	mu       sync.Mutex
	sessions map[string]*mediaSession // by Call-ID
	failed   map[string]time.Time     // relay node -> last failure
	watching map[string]bool          // relay nodes whose timeouts are watched
	ended    func(callID string)      // proxy.MediaEnded
	ctx      context.Context
	cancel   context.CancelFunc

	lastNoRelayLog atomic.Int64
	failovers      prometheus.Counter
}

var _ proxy.Media = (*relayMedia)(nil)

// newMedia builds the proxy's Media from relay.mode; nil for mode never.
func (n *Node) newMedia(log *slog.Logger) (*relayMedia, error) {
	mode, err := relay.ParseMode(n.cfg.Relay.Mode)
	if err != nil {
		return nil, fmt.Errorf("node: key \"relay.mode\": %w", err)
	}
	if mode == relay.ModeNever {
		return nil, nil
	}
	m := &relayMedia{
		mode:  mode,
		self:  n.Name(),
		dc:    n.mat.Self.Datacenter,
		local: n.relay,
		conns: n.rpcClient,
		relays: func(key string) []ring.Node {
			r := n.ov.Ring(certs.RoleRelay)
			return r.Replicas(key, r.Len())
		},
		log:      log,
		sessions: map[string]*mediaSession{},
		failed:   map[string]time.Time{},
		watching: map[string]bool{},
		failovers: prometheus.NewCounter(prometheus.CounterOpts{Name: "sipmesh_media_relay_failovers_total",
			Help: "Relays that failed or refused a call's media session, after which the next relay on the ring was tried."}),
	}
	n.reg.MustRegister(m.failovers, prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipmesh_media_sessions",
		Help: "Calls whose media this node anchors on a relay (the relay may be another node)."},
		func() float64 { m.mu.Lock(); defer m.mu.Unlock(); return float64(len(m.sessions)) }))
	return m, nil
}

// start begins watching for sessions that relays end on their own; ended
// is told their Call-IDs. stop with the returned func.
func (m *relayMedia) start(ctx context.Context, ended func(callID string)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.ctx, m.cancel, m.ended = ctx, cancel, ended
	m.mu.Unlock()
	unwatch := func() {}
	if m.local != nil {
		unwatch = m.local.Watch(func(si relay.SessionInfo) {
			if si.Owner == "" { // allocated by this node, not over the RPC
				m.endedBy(m.self, si)
			}
		})
	}
	go m.reapLost(ctx)
	return func() { unwatch(); cancel() }
}

// reapLost forgets, every minute, the calls whose relay died more than
// lostGrace ago and that no re-offer moved since.
func (m *relayMedia) reapLost(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			var gone []string
			m.mu.Lock()
			for id, s := range m.sessions {
				if !s.lost.IsZero() && now.Sub(s.lost) > lostGrace {
					delete(m.sessions, id)
					gone = append(gone, id)
				}
			}
			ended := m.ended
			m.mu.Unlock()
			for _, id := range gone {
				if ended != nil {
					ended(id)
				}
			}
		}
	}
}

// Wanted implements proxy.Media: relay.mode decides (relay.NeedsRelay),
// provided the mesh has a relay and the caller's media can be relayed.
func (m *relayMedia) Wanted(caller proxy.Party, callees []proxy.Party) bool {
	if len(m.relays("")) == 0 {
		if now := time.Now().UnixNano(); now-m.lastNoRelayLog.Load() > int64(noRelayLogEvery) {
			m.lastNoRelayLog.Store(now)
			m.log.Warn("no node of the mesh has the relay role: calls are not relayed (relay.mode " + string(m.mode) + ")")
		}
		return false
	}
	if caller.SDP != nil {
		if media, err := relay.ParseSDP(caller.SDP); err == nil && !relay.Relayable(media) {
			return false // WebRTC: ICE and DTLS end to end (relay.Relayable)
		}
	}
	parties := make([]relay.Party, 0, 1+len(callees))
	for _, p := range append([]proxy.Party{caller}, callees...) {
		rp := relay.Party{Source: p.Source, Contact: p.Contact, Datagram: p.Datagram}
		if p.SDP != nil {
			media, _ := relay.ParseSDP(p.SDP)
			for _, md := range media {
				rp.Media = append(rp.Media, md.RTP.Addr())
			}
		}
		parties = append(parties, rp)
	}
	return relay.NeedsRelay(m.mode, parties...)
}

// SDP implements proxy.Media.
func (m *relayMedia) SDP(ctx context.Context, u proxy.SDPUpdate) ([]byte, error) {
	media, err := relay.ParseSDP(u.Body)
	if err != nil {
		return nil, sipError(fmt.Errorf("node: media: %w", err))
	}
	if len(media) == 0 {
		return u.Body, nil // no stream: nothing to relay
	}
	m.mu.Lock()
	s := m.sessions[u.CallID]
	m.mu.Unlock()
	if s == nil && !relay.Relayable(media) {
		return u.Body, nil // a late WebRTC offer: not relayed either
	}
	if u.RewriteOnly {
		if s == nil {
			return u.Body, nil
		}
		return rewrite(u.Body, s.al, u.From)
	}
	var prev []relay.StreamSpec
	if s != nil {
		prev = s.peers
	}
	specs, peers := streamSpecs(u.From, media, prev)
	if s != nil && !s.lost.IsZero() {
		m.log.Info("media of a call whose relay died moves to another relay", "call_id", u.CallID, "dead_relay", s.relay)
		specs = peers
	} else if s != nil {
		al, err := m.controller(s.relay).Update(ctx, relay.UpdateRequest{CallID: u.CallID, Streams: specs, Relatch: u.Relatch})
		if err == nil {
			m.store(u.CallID, &mediaSession{relay: s.relay, al: al, peers: peers, allocated: s.allocated})
			return rewrite(u.Body, al, u.From)
		}
		if !sessionLost(err) {
			return nil, sipError(fmt.Errorf("node: media: %w", err))
		}
		// The relay timed the session out, restarted or died: a new
		// session, with both parties' last addresses. The party that
		// does not get this body keeps sending to the old relay until
		// its next offer or answer (a re-INVITE restores the media).
		m.log.Warn("media session lost with its relay; allocating another", "call_id", u.CallID, "relay", s.relay, "err", err)
		specs = peers
	}
	al, node, err := m.allocate(ctx, u.CallID, specs)
	if err != nil {
		return nil, sipError(err)
	}
	m.store(u.CallID, &mediaSession{relay: node, al: al, peers: peers, allocated: time.Now()})
	m.watch(node)
	return rewrite(u.Body, al, u.From)
}

// Free implements proxy.Media.
func (m *relayMedia) Free(ctx context.Context, callID string) {
	m.mu.Lock()
	s := m.sessions[callID]
	delete(m.sessions, callID)
	m.mu.Unlock()
	if s == nil || !s.lost.IsZero() {
		return
	}
	if _, err := m.controller(s.relay).Free(ctx, callID); err != nil && !errors.Is(err, relay.ErrNotFound) {
		// A relay that is alive but cannot be told frees the session
		// after its inactivity timeout; a dead one took it along.
		m.log.Warn("media session not freed: its relay did not answer (a live relay frees it on inactivity)", "call_id", callID, "relay", s.relay, "err", err)
	}
}

func (m *relayMedia) store(callID string, s *mediaSession) {
	m.mu.Lock()
	m.sessions[callID] = s
	m.mu.Unlock()
}

func (m *relayMedia) controller(node string) relay.Controller {
	if m.ctl != nil {
		return m.ctl(node)
	}
	if node == m.self && m.local != nil {
		return m.local
	}
	return relay.NewRemote(m.conns, node)
}

// allocate asks the relays of the ring for a session, in relayOrder, until
// one takes it. An offer no relay can take (488) is not tried further.
func (m *relayMedia) allocate(ctx context.Context, callID string, specs []relay.StreamSpec) (relay.Allocation, string, error) {
	m.mu.Lock()
	order := relayOrder(m.relays(callID), m.dc, m.failed, time.Now())
	m.mu.Unlock()
	if len(order) == 0 {
		return relay.Allocation{}, "", fmt.Errorf("node: media: %w: no node of the mesh has the relay role", relay.ErrNoRelay)
	}
	var errs []error
	for i, node := range order {
		actx, cancel := context.WithTimeout(ctx, relayAttemptTimeout)
		al, err := m.controller(node).Allocate(actx, relay.AllocateRequest{CallID: callID, Streams: specs})
		cancel()
		if err == nil {
			m.mu.Lock()
			delete(m.failed, node)
			m.mu.Unlock()
			return al, node, nil
		}
		if errors.Is(err, relay.ErrUnsupported) || errors.Is(err, relay.ErrInvalid) {
			return relay.Allocation{}, "", fmt.Errorf("node: media: %w", err)
		}
		m.mu.Lock()
		m.failed[node] = time.Now()
		m.mu.Unlock()
		m.failovers.Inc()
		errs = append(errs, err)
		m.log.Warn("relay did not take a call's media; trying the next relay of the ring", "call_id", callID, "relay", node,
			"left", len(order)-i-1, "err", err)
		if ctx.Err() != nil {
			break
		}
	}
	return relay.Allocation{}, "", fmt.Errorf("node: media: %w (tried %s): %w", relay.ErrNoRelay, strings.Join(order[:len(errs)], ", "), errors.Join(errs...))
}

// relayOrder is the order in which relays are asked for a call's session:
// the ring's order for the Call-ID (so that every node picks the same relay
// for a call), nodes of datacenter dc first (the caller's media stays in
// its datacenter), relays that failed within relayFailMemory last.
func relayOrder(nodes []ring.Node, dc string, failed map[string]time.Time, now time.Time) []string {
	rank := func(nd ring.Node) int {
		r := 0
		if nd.Datacenter != dc {
			r++
		}
		if t, ok := failed[nd.Name]; ok && now.Sub(t) < relayFailMemory {
			r += 2
		}
		return r
	}
	sorted := slices.Clone(nodes)
	slices.SortStableFunc(sorted, func(a, b ring.Node) int { return rank(a) - rank(b) })
	out := make([]string, len(sorted))
	for i, nd := range sorted {
		out[i] = nd.Name
	}
	return out
}

// sessionLost reports whether an Update failed because the session is
// gone (the relay freed it, restarted, is closing or cannot be reached)
// rather than because the relay refused the change.
func sessionLost(err error) bool {
	for _, refusal := range []error{relay.ErrUnsupported, relay.ErrInvalid, relay.ErrCapacity, relay.ErrPortsExhausted} {
		if errors.Is(err, refusal) {
			return false
		}
	}
	return true
}

// sipError carries a relay error as the response it maps to
// (relay.SIPStatus; 503 with Retry-After when no relay takes the call).
func sipError(err error) error {
	code := relay.SIPStatus(err)
	if code == 503 {
		return sipstatus.ServiceUnavailable(5*time.Second, err)
	}
	return sipstatus.New(code, "", err)
}

// streamSpecs turns the media of an SDP body sent by party from into the
// streams to give the relay (the other party's peers zero: unchanged),
// and returns them merged into prev: both parties' last addresses.
func streamSpecs(from proxy.Side, media []relay.Media, prev []relay.StreamSpec) (specs, merged []relay.StreamSpec) {
	specs = make([]relay.StreamSpec, len(media))
	merged = make([]relay.StreamSpec, max(len(media), len(prev)))
	copy(merged, prev)
	for i, md := range media {
		peer := peerOf(md)
		if from == proxy.SideA {
			specs[i].A, merged[i].A = peer, peer
		} else {
			specs[i].B, merged[i].B = peer, peer
		}
	}
	return specs, merged
}

// peerOf is where a party receives one stream. A hold address (0.0.0.0,
// RFC 3264 §8.4, or ::) or a host name says nothing of where the party is:
// the relay keeps what it knew, and latching finds the party.
func peerOf(md relay.Media) relay.Peer {
	p := md.Peer()
	usable := func(a netip.AddrPort) bool { return a.Addr().IsValid() && !a.Addr().IsUnspecified() }
	if !usable(p.RTP) {
		p.RTP = netip.AddrPort{}
	}
	if !usable(p.RTCP) {
		p.RTCP = netip.AddrPort{}
	}
	return p
}

// rewrite points a body sent by party from at the relay ports of the party
// that receives it.
func rewrite(body []byte, al relay.Allocation, from proxy.Side) ([]byte, error) {
	eps := al.ForB()
	if from == proxy.SideB {
		eps = al.ForA()
	}
	out, err := relay.RewriteSDP(body, eps)
	if err != nil {
		return nil, sipError(fmt.Errorf("node: media: %w", err))
	}
	return out, nil
}

// watch follows the sessions that relay node ends on its own (its
// inactivity timeout) over the RPC, from the first call this node puts
// there until the node leaves the relay ring, when its calls are marked
// lost: their media went with it.
func (m *relayMedia) watch(node string) {
	if node == m.self && m.local != nil {
		return // start watches the local relay
	}
	m.mu.Lock()
	ctx := m.ctx
	if m.watching[node] || ctx == nil {
		m.mu.Unlock()
		return
	}
	m.watching[node] = true
	m.mu.Unlock()
	go func() {
		defer func() {
			m.mu.Lock()
			delete(m.watching, node)
			m.mu.Unlock()
		}()
		remote := relay.NewRemote(m.conns, node)
		backoff := 200 * time.Millisecond
		since := time.Time{} // sessions allocated before this are checked on reconnecting
		for {
			if !since.IsZero() {
				m.reconcile(ctx, remote, since)
			}
			since = time.Now()
			err := remote.Watch(ctx, func(si relay.SessionInfo) { m.endedBy(node, si) })
			if ctx.Err() != nil {
				return
			}
			if !m.onRing(node) {
				m.relayGone(node)
				return
			}
			m.log.Debug("watching a relay's timeouts: stream broken; reconnecting", "relay", node, "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}()
}

func (m *relayMedia) onRing(node string) bool {
	for _, nd := range m.relays("") {
		if nd.Name == node {
			return true
		}
	}
	return false
}

// reconcile marks lost the calls on a relay that no longer has their
// sessions (it restarted, or timed them out while the watch stream was
// down), among those allocated before since.
func (m *relayMedia) reconcile(ctx context.Context, remote *relay.Remote, since time.Time) {
	lctx, cancel := context.WithTimeout(ctx, relayAttemptTimeout)
	defer cancel()
	live, err := remote.Sessions(lctx)
	if err != nil {
		return
	}
	has := make(map[string]bool, len(live))
	for _, si := range live {
		has[si.CallID] = true
	}
	n := m.markLost(remote.Node(), func(id string, s *mediaSession) bool { return !has[id] && s.allocated.Before(since) })
	if n > 0 {
		m.log.Warn("relay no longer has the sessions of calls (it restarted?): their media is lost until a re-offer", "relay", remote.Node(), "calls", n)
	}
}

// relayGone marks lost every call on a relay that left the ring (dead or
// gone): their media is lost; their signalling goes on, and a re-offer
// moves their media to another relay (SDP).
func (m *relayMedia) relayGone(node string) {
	if n := m.markLost(node, func(string, *mediaSession) bool { return true }); n > 0 {
		m.log.Warn("relay left the mesh: the media of its calls is lost until a re-offer moves it", "relay", node, "calls", n)
	}
}

func (m *relayMedia) markLost(node string, which func(string, *mediaSession) bool) int {
	now := time.Now()
	n := 0
	m.mu.Lock()
	defer m.mu.Unlock()
	for id, s := range m.sessions {
		if s.relay == node && s.lost.IsZero() && which(id, s) {
			c := *s
			c.lost = now
			m.sessions[id] = &c
			n++
		}
	}
	return n
}

// endedBy forgets a call whose session relay node freed on its own.
func (m *relayMedia) endedBy(node string, si relay.SessionInfo) {
	m.mu.Lock()
	s := m.sessions[si.CallID]
	if s == nil || s.relay != node {
		m.mu.Unlock()
		return
	}
	delete(m.sessions, si.CallID)
	ended := m.ended
	m.mu.Unlock()
	m.log.Info("media session ended by its relay", "call_id", si.CallID, "relay", node, "reason", si.Freed, "packets", si.Packets())
	if ended != nil {
		ended(si.CallID)
	}
}
