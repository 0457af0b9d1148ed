package relay

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Peer is where one party said, in its SDP, that it receives a stream's
// media (c= address with m= port, and a=rtcp, RFC 3605).
type Peer struct {
	// RTP is the party's RTP address; zero when not known yet (the callee
	// before its answer).
	RTP netip.AddrPort
	// RTCP is the party's RTCP address; zero = RTP port + 1.
	RTCP netip.AddrPort
	// Family picks the relay interface when RTP is zero: "IP4" or "IP6"
	// (SDP addrtype, e.g. from the callee's Contact); "" = the first
	// interface of Config.Interfaces.
	Family string
}

// StreamSpec describes both parties of one media stream (m-line).
type StreamSpec struct{ A, B Peer }

// AllocateRequest asks for a session of a call. Side A is the party that
// sent the initial INVITE, side B the party it is sent to; the sides do
// not swap on a re-INVITE from B.
type AllocateRequest struct {
	CallID string
	// Owner is the node that allocates, told when the session times out;
	// set by the gRPC service from the caller's certificate.
	Owner   string
	Streams []StreamSpec
}

// UpdateRequest changes a session: peers (a zero Peer is unchanged), more
// streams (a new offer with more m-lines), and with Relatch it forgets the
// latched sources so that each party is learnt again from its next
// packets (a re-INVITE or UPDATE that may have moved a party).
type UpdateRequest struct {
	CallID  string
	Streams []StreamSpec
	Relatch bool
}

// Controller is what a proxy uses of a relay: the local *Relay when the
// relay chosen for a call runs on the proxy's own node, a *Remote
// otherwise.
type Controller interface {
	Allocate(ctx context.Context, req AllocateRequest) (Allocation, error)
	Update(ctx context.Context, req UpdateRequest) (Allocation, error)
	Free(ctx context.Context, callID string) (SessionInfo, error)
	Sessions(ctx context.Context) ([]SessionInfo, error)
}

// Relay is the media relay engine: sessions of port pairs forwarding RTP
// and RTCP between the two parties of each media stream of a call.
type Relay struct {
	cfg       Config
	log       *slog.Logger
	epoch     time.Time // monotonic base of session.lastActivity
	epochWall time.Time
	pools     []*portPool // per cfg.Interfaces

	mu       sync.Mutex
	sessions map[string]*session
	closed   bool
	watchers map[int]func(SessionInfo)
	nextW    int

	stop chan struct{}
	done chan struct{}
}

var _ Controller = (*Relay)(nil)

// New starts a relay. Close it to free every session.
func New(cfg Config) (*Relay, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	now := time.Now()
	r := &Relay{
		cfg:       cfg,
		log:       cfg.Logger,
		epoch:     now,
		epochWall: now,
		sessions:  map[string]*session{},
		watchers:  map[int]func(SessionInfo){},
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	for _, in := range cfg.Interfaces {
		r.pools = append(r.pools, newPortPool(in.Bind.Unmap(), cfg.PortMin, cfg.PortMax))
	}
	go r.sweep()
	return r, nil
}

// Allocate creates the session of req.CallID with a port pair per party
// and stream. If the session exists (a retransmitted or spiralled INVITE)
// it adds the streams it lacks, updates peers and returns the whole
// allocation. Refusals: ErrCapacity, ErrPortsExhausted, ErrUnsupported,
// ErrInvalid, ErrClosed.
func (r *Relay) Allocate(_ context.Context, req AllocateRequest) (Allocation, error) {
	if req.CallID == "" || len(req.Streams) == 0 {
		return Allocation{}, fmt.Errorf("relay: allocate: a Call-ID and at least one stream are required: %w", ErrInvalid)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Allocation{}, ErrClosed
	}
	if s, ok := r.sessions[req.CallID]; ok {
		if err := r.updateLocked(s, req.Streams, false); err != nil {
			return Allocation{}, fmt.Errorf("relay: allocate %q (existing): %w", req.CallID, err)
		}
		return s.allocation(), nil
	}
	if r.cfg.MaxSessions > 0 && len(r.sessions) >= r.cfg.MaxSessions {
		return Allocation{}, fmt.Errorf("relay: allocate %q: %d sessions: %w", req.CallID, len(r.sessions), ErrCapacity)
	}
	s := &session{relay: r, callID: req.CallID, owner: req.Owner, created: time.Now()}
	s.lastActivity.Store(int64(time.Since(r.epoch)))
	if err := r.updateLocked(s, req.Streams, false); err != nil {
		r.release(s)
		return Allocation{}, fmt.Errorf("relay: allocate %q: %w", req.CallID, err)
	}
	r.sessions[req.CallID] = s
	r.log.Info("relay: session allocated", "call_id", req.CallID, "owner", req.Owner, "streams", len(s.streams))
	return s.allocation(), nil
}

// Update changes the session of req.CallID; see UpdateRequest.
func (r *Relay) Update(_ context.Context, req UpdateRequest) (Allocation, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Allocation{}, ErrClosed
	}
	s, ok := r.sessions[req.CallID]
	if !ok {
		return Allocation{}, fmt.Errorf("relay: update %q: %w", req.CallID, ErrNotFound)
	}
	if err := r.updateLocked(s, req.Streams, req.Relatch); err != nil {
		return Allocation{}, fmt.Errorf("relay: update %q: %w", req.CallID, err)
	}
	return s.allocation(), nil
}

// updateLocked applies specs to s, allocating the streams it lacks. On
// error, streams allocated by this call stay in s (and are freed with it).
func (r *Relay) updateLocked(s *session, specs []StreamSpec, relatch bool) error {
	if len(specs) > r.cfg.MaxStreams {
		return fmt.Errorf("%d media streams, at most %d: %w", len(specs), r.cfg.MaxStreams, ErrUnsupported)
	}
	for i, spec := range specs {
		if i == len(s.streams) {
			st, err := r.newStream(s, spec)
			if err != nil {
				return fmt.Errorf("stream %d: %w", i, err)
			}
			s.streams = append(s.streams, st)
		}
		st := s.streams[i]
		st.a.setPeer(r.notSelf(spec.A.RTP), r.notSelf(spec.A.RTCP))
		st.b.setPeer(r.notSelf(spec.B.RTP), r.notSelf(spec.B.RTCP))
	}
	if relatch {
		for _, st := range s.streams {
			st.a.relatch()
			st.b.relatch()
		}
	}
	return nil
}

// notSelf drops an address of the relay itself: an SDP already rewritten
// by a proxy on the call's path (a spiral) must not make the relay send
// to itself.
func (r *Relay) notSelf(a netip.AddrPort) netip.AddrPort {
	if !a.IsValid() || int(a.Port()) < r.cfg.PortMin || int(a.Port()) > r.cfg.PortMax {
		return a
	}
	ip := a.Addr().Unmap()
	for _, in := range r.cfg.Interfaces {
		if ip == in.Bind.Unmap() || ip == in.advertised().Unmap() {
			return netip.AddrPort{}
		}
	}
	return a
}

// newStream binds a port pair per party and starts forwarding.
func (r *Relay) newStream(s *session, spec StreamSpec) (*stream, error) {
	ia, err := r.pick(spec.A)
	if err != nil {
		return nil, fmt.Errorf("side a: %w", err)
	}
	ib, err := r.pick(spec.B)
	if err != nil {
		return nil, fmt.Errorf("side b: %w", err)
	}
	a, err := r.newLeg(s, "a", ia)
	if err != nil {
		return nil, err
	}
	b, err := r.newLeg(s, "b", ib)
	if err != nil {
		a.close()
		r.pools[ia].release(a.port)
		return nil, err
	}
	a.other, b.other = b, a
	s.wg.Add(4)
	go a.serve(kindRTP)
	go a.serve(kindRTCP)
	go b.serve(kindRTP)
	go b.serve(kindRTCP)
	return &stream{a: a, b: b}, nil
}

// pick returns the interface for a party.
func (r *Relay) pick(p Peer) (int, error) {
	var want4 bool
	switch {
	case p.RTP.IsValid():
		want4 = p.RTP.Addr().Unmap().Is4()
	case p.Family == "IP4":
		want4 = true
	case p.Family == "IP6":
		want4 = false
	case p.Family == "":
		return 0, nil
	default:
		return 0, fmt.Errorf("address family %q (want IP4 or IP6): %w", p.Family, ErrInvalid)
	}
	for i, in := range r.cfg.Interfaces {
		if in.Bind.Unmap().Is4() == want4 {
			return i, nil
		}
	}
	fam := "IPv6"
	if want4 {
		fam = "IPv4"
	}
	return 0, fmt.Errorf("the relay has no %s address for a party that uses %s: %w", fam, fam, ErrUnsupported)
}

func (r *Relay) newLeg(s *session, side string, iface int) (*leg, error) {
	rtpConn, rtcpConn, port, err := r.pools[iface].acquire()
	if err != nil {
		return nil, err
	}
	return &leg{sess: s, side: side, pool: r.pools[iface], iface: r.cfg.Interfaces[iface], port: port, conns: [2]*net.UDPConn{rtpConn, rtcpConn}}, nil
}

func (l *leg) close() {
	l.conns[kindRTP].Close()
	l.conns[kindRTCP].Close()
}

// release closes a session's sockets, waits for its goroutines and returns
// its ports. The session must no longer be reachable from r.sessions.
func (r *Relay) release(s *session) {
	for _, st := range s.streams {
		st.a.close()
		st.b.close()
	}
	s.wg.Wait()
	for _, st := range s.streams {
		st.a.pool.release(st.a.port)
		st.b.pool.release(st.b.port)
	}
}

// Free ends the session of callID and returns its final counters; its
// ports are free when Free returns. ErrNotFound if there is none.
func (r *Relay) Free(_ context.Context, callID string) (SessionInfo, error) {
	r.mu.Lock()
	s, ok := r.sessions[callID]
	delete(r.sessions, callID)
	r.mu.Unlock()
	if !ok {
		return SessionInfo{}, fmt.Errorf("relay: free %q: %w", callID, ErrNotFound)
	}
	return r.end(s, FreedByRequest), nil
}

func (r *Relay) end(s *session, why string) SessionInfo {
	r.release(s)
	info := s.info(time.Now(), why)
	// Per party too: whether media flowed both ways is the first thing an
	// operator asks of a call.
	var fromA, fromB uint64
	for _, st := range info.Streams {
		fromA += st.A.Packets
		fromB += st.B.Packets
	}
	r.log.Info("relay: session freed", "call_id", s.callID, "owner", s.owner, "reason", why, "packets", info.Packets(),
		"a_packets", fromA, "b_packets", fromB)
	return info
}

// Session returns a snapshot of the session of callID.
func (r *Relay) Session(callID string) (SessionInfo, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, ok := r.sessions[callID]
	if !ok {
		return SessionInfo{}, false
	}
	return s.info(time.Now(), ""), true
}

// Sessions returns a snapshot of every session, oldest first.
func (r *Relay) Sessions(context.Context) ([]SessionInfo, error) {
	now := time.Now()
	r.mu.Lock()
	out := make([]SessionInfo, 0, len(r.sessions))
	for _, s := range r.sessions {
		out = append(out, s.info(now, ""))
	}
	r.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if !out[i].Created.Equal(out[j].Created) {
			return out[i].Created.Before(out[j].Created)
		}
		return out[i].CallID < out[j].CallID
	})
	return out, nil
}

// Stats are relay-wide numbers.
type Stats struct {
	Sessions   int // live sessions
	PortPairs  int // port pairs allocated (two per stream), all interfaces
	Capacity   int // Config.MaxSessions (0: no cap)
	PairsTotal int // port pairs in the range, per interface
}

// Stats returns relay-wide numbers.
func (r *Relay) Stats() Stats {
	r.mu.Lock()
	st := Stats{Sessions: len(r.sessions), Capacity: r.cfg.MaxSessions}
	r.mu.Unlock()
	for _, p := range r.pools {
		st.PortPairs += p.allocated()
		st.PairsTotal = len(p.used)
	}
	return st
}

// Watch calls f (from the sweeper goroutine, in order) with the final
// state of every session the relay frees on its own, until cancel.
func (r *Relay) Watch(f func(SessionInfo)) (cancel func()) {
	r.mu.Lock()
	id := r.nextW
	r.nextW++
	r.watchers[id] = f
	r.mu.Unlock()
	return func() {
		r.mu.Lock()
		delete(r.watchers, id)
		r.mu.Unlock()
	}
}

// sweep frees sessions that timed out.
func (r *Relay) sweep() {
	defer close(r.done)
	t := time.NewTicker(r.cfg.SweepInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		now := time.Since(r.epoch)
		var expired []*session
		r.mu.Lock()
		for id, s := range r.sessions {
			// A stamp may be up to activityGranularity old: never free
			// early.
			limit := r.cfg.SetupTimeout + time.Duration(activityGranularity)
			if s.seenMedia.Load() {
				limit = r.cfg.InactivityTimeout + time.Duration(activityGranularity)
			}
			if now-time.Duration(s.lastActivity.Load()) >= limit {
				expired = append(expired, s)
				delete(r.sessions, id)
			}
		}
		r.mu.Unlock()
		for _, s := range expired {
			info := r.end(s, FreedTimeout)
			if r.cfg.OnTimeout != nil {
				r.cfg.OnTimeout(info)
			}
			r.mu.Lock()
			ws := make([]func(SessionInfo), 0, len(r.watchers))
			for _, w := range r.watchers {
				ws = append(ws, w)
			}
			r.mu.Unlock()
			for _, w := range ws {
				w(info)
			}
		}
	}
}

// Close frees every session (reason "shutdown") and stops the relay.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	all := r.sessions
	r.sessions = map[string]*session{}
	r.mu.Unlock()
	close(r.stop)
	<-r.done
	for _, s := range all {
		r.end(s, FreedShutdown)
	}
	return nil
}
