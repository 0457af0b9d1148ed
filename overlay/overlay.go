package overlay

import (
	"errors"
	"fmt"
	"log"
	"log/slog"
	"maps"
	"math/big"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay/ring"
)

// DefaultPort is the gossip port.
const DefaultPort = 7946

// rebuildSettle is how long the rebuilder waits after a membership event
// for more before it recomputes the rings.
const rebuildSettle = 50 * time.Millisecond

// Timing presets.
const (
	TimingLAN = "lan" // memberlist.DefaultLANConfig
	TimingWAN = "wan" // memberlist.DefaultWANConfig
)

// packetBufferSize replaces memberlist's UDPBufferSize. Packets travel in
// TCP frames, so they are not bound by a datagram; the larger size lets a
// revocation list of a few hundred entries spread as one broadcast (larger
// lists still spread through push/pull).
const packetBufferSize = 16 << 10

// Config configures an Overlay. Start from DefaultConfig.
type Config struct {
	// Material is the node's identity: its name, datacenter and allowed
	// roles come from the certificate.
	Material *certs.Material
	// BindAddr is the IP to bind and advertise. "0.0.0.0" binds every
	// address and advertises a private one.
	BindAddr string
	// Port is the gossip port (DefaultPort; 0 picks an ephemeral port).
	Port int
	// Timing selects memberlist's preset: TimingLAN ("" too) or TimingWAN.
	Timing string
	// Roles are the roles this node runs: a subset of the certificate's.
	// Empty means all the certificate allows.
	Roles []string
	// Services maps overlay.Service* names to host:port; gossiped.
	Services map[string]string
	// Partitions is the number of ring partitions (ring.DefaultPartitions
	// when 0); every node of a cluster must agree.
	Partitions int
	// Logger receives the overlay's and memberlist's logs (nil: none).
	Logger *slog.Logger
	// Registerer receives the overlay's metrics (nil: not registered).
	Registerer prometheus.Registerer
	// Tune, when set, may adjust memberlist's configuration after the
	// preset and the transport's settings are applied (tests shorten
	// timers). Name, Transport, addresses, Logger and the delegates are
	// set by the overlay afterwards.
	Tune func(*memberlist.Config)
	// CRLPath, when set, is polled every second and a newer revocation
	// list found there is installed and spread to the mesh.
	CRLPath string
	// DeadRetention is how long dead and left members stay listed by
	// Members (24h when 0).
	DeadRetention time.Duration
	// RefusalLogWindow limits refusal logs to one per peer, reason and
	// window (10s when 0); every refusal is counted.
	RefusalLogWindow time.Duration

	hooks *testHooks
}

// testHooks let tests build misbehaving nodes.
type testHooks struct {
	name           string // memberlist name other than the certificate's
	meta           []byte // raw metadata instead of the encoded one
	trustAnyServer bool   // dial without verifying the listener
	allowOperator  bool   // run an overlay with an operator certificate
}

// DefaultConfig returns the configuration of a production node; Material
// must still be set.
func DefaultConfig() Config {
	return Config{
		BindAddr:         "0.0.0.0",
		Port:             DefaultPort,
		Timing:           TimingLAN,
		Partitions:       ring.DefaultPartitions,
		DeadRetention:    24 * time.Hour,
		RefusalLogWindow: 10 * time.Second,
	}
}

// Overlay is this node's membership in the mesh and its view of the rings.
type Overlay struct {
	cfg   Config
	log   *slog.Logger
	mat   *certs.Material
	name  string
	self  Member
	meta  []byte
	tr    *transport
	ml    atomic.Pointer[memberlist.Memberlist]
	met   *metrics
	ref   *refusals
	bcast *memberlist.TransmitLimitedQueue

	evMu    sync.Mutex
	pending []event
	kick    chan struct{}

	mu         sync.RWMutex
	members    map[string]*memberState
	leftIntent map[string]time.Time

	rings     atomic.Pointer[map[string]*ring.Ring]
	emptyRing *ring.Ring

	subMu   sync.Mutex
	subs    map[uint64]chan struct{}
	nextSub uint64

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

type memberState struct {
	m      Member
	serial *big.Int
	since  time.Time // last state change
}

// New validates cfg, binds the gossip listener and starts memberlist. The
// node is alone until Join.
func New(cfg Config) (*Overlay, error) {
	o, mc, err := prepare(cfg)
	if err != nil {
		return nil, err
	}
	o.wg.Add(1)
	go o.run()
	ml, err := memberlist.Create(mc)
	if err != nil {
		o.tr.Shutdown()
		close(o.stop)
		o.wg.Wait()
		o.met.unregister(o.cfg.Registerer)
		return nil, fmt.Errorf("overlay: start memberlist: %w", err)
	}
	o.ml.Store(ml)
	if cfg.CRLPath != "" {
		o.wg.Add(1)
		go o.watchCRL(cfg.CRLPath)
	}
	o.log.Info("overlay: started", "node", o.name, "gossip", o.tr.advAddr, "datacenter", o.self.Datacenter, "roles", o.self.Roles, "timing", o.cfg.Timing)
	return o, nil
}

// prepare validates cfg and builds everything but the running memberlist.
func prepare(cfg Config) (*Overlay, *memberlist.Config, error) {
	if cfg.Material == nil {
		return nil, nil, errors.New("overlay: no TLS material: tls.cert and tls.key are required")
	}
	mat := cfg.Material
	hooks := cfg.hooks
	if hooks == nil {
		hooks = &testHooks{}
	}
	if mat.Self.Kind != certs.KindNode && !hooks.allowOperator {
		return nil, nil, fmt.Errorf("overlay: %s cannot join the mesh: use a node certificate ('sipmesh cert issue' without --operator)", mat.Self)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "0.0.0.0"
	}
	if cfg.Port < 0 || cfg.Port > 65535 {
		return nil, nil, fmt.Errorf("overlay: gossip port %d is out of range", cfg.Port)
	}
	if cfg.Partitions <= 0 {
		cfg.Partitions = ring.DefaultPartitions
	}
	if cfg.DeadRetention <= 0 {
		cfg.DeadRetention = 24 * time.Hour
	}
	if cfg.RefusalLogWindow <= 0 {
		cfg.RefusalLogWindow = 10 * time.Second
	}
	var mc *memberlist.Config
	switch strings.ToLower(cfg.Timing) {
	case "", TimingLAN:
		cfg.Timing, mc = TimingLAN, memberlist.DefaultLANConfig()
	case TimingWAN:
		cfg.Timing, mc = TimingWAN, memberlist.DefaultWANConfig()
	default:
		return nil, nil, fmt.Errorf("overlay: timing %q is not known: use %q or %q", cfg.Timing, TimingLAN, TimingWAN)
	}
	roles := slices.Clone(cfg.Roles)
	if len(roles) == 0 {
		roles = slices.Clone(mat.Self.Roles)
	}
	for _, r := range roles {
		if !mat.Self.HasRole(r) {
			return nil, nil, fmt.Errorf("overlay: role %q is not allowed by the certificate of %q (it allows %s): narrow node.roles or issue a certificate with --roles", r, mat.Self.Name, strings.Join(mat.Self.Roles, ","))
		}
	}
	slices.Sort(roles)
	roles = slices.Compact(roles)
	for k, v := range cfg.Services {
		if _, _, err := net.SplitHostPort(v); k == "" || err != nil {
			return nil, nil, fmt.Errorf("overlay: service %q address %q is not host:port", k, v)
		}
	}
	met, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, nil, err
	}
	name := mat.Self.Name
	if hooks.name != "" {
		name = hooks.name
	}
	meta := hooks.meta
	if meta == nil {
		meta, err = encodeMeta(mat.Self.Datacenter, roles, cfg.Services, mat.Self.Serial)
		if err != nil {
			return nil, nil, err
		}
	}
	// The transport's needs, before Tune so that tests may still change them.
	mc.UDPBufferSize = packetBufferSize
	// memberlist's fallback "TCP ping" exists for networks that drop UDP;
	// here packets already ride on TCP, and a fallback would cost a fresh
	// TLS handshake exactly when a peer is slow or the machine is busy.
	mc.DisableTcpPings = true
	// A name is proven by its certificate, so a node restarted on another
	// address (an ephemeral port, a new IP) may take its dead entry back at
	// once instead of being refused as a conflict.
	mc.DeadNodeReclaimTime = time.Nanosecond
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	o := &Overlay{
		cfg:        cfg,
		log:        cfg.Logger,
		mat:        mat,
		name:       name,
		meta:       meta,
		met:        met,
		ref:        newRefusals(cfg.Logger, met, cfg.RefusalLogWindow),
		kick:       make(chan struct{}, 1),
		members:    map[string]*memberState{},
		leftIntent: map[string]time.Time{},
		emptyRing:  ring.New(nil, cfg.Partitions),
		subs:       map[uint64]chan struct{}{},
		stop:       make(chan struct{}),
	}
	o.rings.Store(&map[string]*ring.Ring{})
	idle := 2 * mc.PushPullInterval
	idle = min(max(idle, 30*time.Second), 5*time.Minute)
	o.tr, err = newTransport(transportConfig{
		Material:         mat,
		BindAddr:         cfg.BindAddr,
		Port:             cfg.Port,
		Name:             name,
		Logger:           cfg.Logger,
		Metrics:          met,
		Refusals:         o.ref,
		HandshakeTimeout: mc.TCPTimeout,
		// Long enough for a handshake on a busy machine: a dial given up
		// is CPU spent for nothing, and queued packets wait meanwhile.
		PacketDialTimeout: min(mc.TCPTimeout, 5*time.Second),
		WriteTimeout:      max(mc.ProbeInterval, time.Second),
		IdleTimeout:       idle,
		SuspectWindow:     5 * mc.ProbeInterval,
		trustAnyServer:    hooks.trustAnyServer,
	})
	if err != nil {
		met.unregister(cfg.Registerer)
		return nil, nil, err
	}
	o.self = Member{
		Name:       name,
		Datacenter: mat.Self.Datacenter,
		Roles:      roles,
		State:      StateAlive,
		Address:    o.tr.advAddr,
		Services:   maps.Clone(cfg.Services),
	}
	o.bcast = &memberlist.TransmitLimitedQueue{
		NumNodes: func() int {
			if ml := o.ml.Load(); ml != nil {
				return ml.NumMembers()
			}
			return 1
		},
		RetransmitMult: mc.RetransmitMult,
	}
	d := &delegate{o: o}
	mc.Name = name
	mc.Transport = o.tr
	mc.AdvertiseAddr = o.tr.advIP.String()
	mc.AdvertisePort = o.tr.advPort
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = o.tr.boundPort()
	mc.Delegate = d
	mc.Events = d
	mc.Alive = d
	mc.Merge = d
	mc.Logger = log.New(mlLogWriter{log: cfg.Logger}, "", 0)
	mc.LogOutput = nil
	return o, mc, nil
}

// Join contacts seeds ("host[:port]", DefaultPort when absent) and merges
// their view of the mesh. It returns how many seeds answered.
func (o *Overlay) Join(seeds []string) (int, error) {
	if len(seeds) == 0 {
		return 0, errors.New("overlay: join: no seeds given (set overlay.join or publish _sipmesh._tcp SRV records)")
	}
	addrs := make([]string, 0, len(seeds))
	for _, s := range seeds {
		a, err := seedAddr(s)
		if err != nil {
			return 0, err
		}
		addrs = append(addrs, a)
	}
	n, err := o.ml.Load().Join(addrs)
	if err != nil {
		return n, fmt.Errorf("overlay: join %s: %w", strings.Join(addrs, ", "), err)
	}
	return n, nil
}

func seedAddr(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", errors.New("overlay: empty seed address")
	}
	if host, port, err := net.SplitHostPort(s); err == nil {
		if p, perr := strconv.Atoi(port); perr != nil || p <= 0 || p > 65535 {
			return "", fmt.Errorf("overlay: seed %q: bad port %q", s, port)
		}
		return net.JoinHostPort(host, port), nil
	}
	host := strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	return net.JoinHostPort(host, strconv.Itoa(DefaultPort)), nil
}

// Members returns every node this node knows, itself included, in any state,
// sorted by name. A member whose certificate is revoked is reported dead.
// A member is suspect while gossip still has it alive but this node's last
// attempt to connect to it failed: memberlist keeps its own suspicion to
// itself, and this is what an operator looking at one node wants to know.
// Rings follow gossip only (alive and suspect members stay on them), so
// that every node computes the same owners.
func (o *Overlay) Members() []Member {
	o.mu.RLock()
	out := make([]Member, 0, len(o.members))
	for _, ms := range o.members {
		out = append(out, o.reachable(o.effective(ms)))
	}
	o.mu.RUnlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// Member returns one member by name.
func (o *Overlay) Member(name string) (Member, bool) {
	o.mu.RLock()
	defer o.mu.RUnlock()
	ms, ok := o.members[name]
	if !ok {
		return Member{}, false
	}
	return o.reachable(o.effective(ms)), true
}

// reachable marks an alive member this node cannot connect to as suspect.
func (o *Overlay) reachable(m Member) Member {
	if m.State == StateAlive && m.Name != o.name && o.tr.isUnreachable(m.Name) {
		m.State = StateSuspect
	}
	return m
}

// effective copies a member, applying the current revocation list.
func (o *Overlay) effective(ms *memberState) Member {
	m := ms.m
	m.Roles = slices.Clone(m.Roles)
	m.Services = maps.Clone(m.Services)
	if m.State == StateAlive || m.State == StateSuspect {
		if o.mat.Revoked(ms.serial) {
			m.State = StateDead
		}
	}
	return m
}

// Self returns this node as it advertises itself.
func (o *Overlay) Self() Member {
	m := o.self
	m.Roles = slices.Clone(m.Roles)
	m.Services = maps.Clone(m.Services)
	return m
}

// Name is this node's name.
func (o *Overlay) Name() string { return o.name }

// Ring returns the ring of the alive members running role; never nil (a
// role nobody runs has an empty ring).
func (o *Overlay) Ring(role string) *ring.Ring {
	if r := (*o.rings.Load())[role]; r != nil {
		return r
	}
	return o.emptyRing
}

// Subscribe returns a channel that receives a value after membership or the
// rings changed. Notifications are coalesced (buffer 1): read Members and
// Ring after each. The returned func cancels and closes the channel; so does
// Leave or Shutdown.
func (o *Overlay) Subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	o.subMu.Lock()
	id := o.nextSub
	o.nextSub++
	closed := o.subs == nil
	if !closed {
		o.subs[id] = ch
	}
	o.subMu.Unlock()
	if closed {
		close(ch)
		return ch, func() {}
	}
	return ch, func() {
		o.subMu.Lock()
		defer o.subMu.Unlock()
		if c, ok := o.subs[id]; ok {
			delete(o.subs, id)
			close(c)
		}
	}
}

func (o *Overlay) notify() {
	o.subMu.Lock()
	defer o.subMu.Unlock()
	for _, ch := range o.subs {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// GossipAddr is the host:port other nodes reach this one at (the bound
// port, and the bound IP unless bound to every address).
func (o *Overlay) GossipAddr() string { return o.tr.advAddr }

// Leave tells the mesh this node is leaving, waits up to timeout for the
// message to go out, then stops. Peers list the node as left, not dead.
func (o *Overlay) Leave(timeout time.Duration) error {
	o.closeOnce.Do(func() {
		ml := o.ml.Load()
		// An intent first, so that peers can tell a leave from a crash:
		// memberlist's own leave message does not reach its delegates.
		intent := append([]byte{msgLeave}, o.name...)
		for _, n := range ml.Members() {
			if n.Name != o.name {
				_ = ml.SendBestEffort(n, intent)
			}
		}
		var err error
		if lerr := ml.Leave(timeout); lerr != nil {
			err = fmt.Errorf("overlay: leave: %w", lerr)
		}
		o.tr.drain.Store(true)
		o.closeErr = errors.Join(err, o.stopAll(ml))
	})
	return o.closeErr
}

// Shutdown stops at once without telling anyone, as a crash would: peers
// find the node dead by probing.
func (o *Overlay) Shutdown() error {
	o.closeOnce.Do(func() {
		o.closeErr = o.stopAll(o.ml.Load())
	})
	return o.closeErr
}

func (o *Overlay) stopAll(ml *memberlist.Memberlist) error {
	var err error
	if serr := ml.Shutdown(); serr != nil {
		err = fmt.Errorf("overlay: shutdown: %w", serr)
	}
	close(o.stop)
	o.wg.Wait()
	o.subMu.Lock()
	for id, ch := range o.subs {
		delete(o.subs, id)
		close(ch)
	}
	o.subs = nil
	o.subMu.Unlock()
	o.log.Info("overlay: stopped", "node", o.name)
	return err
}

// event is a membership change queued by memberlist's delegates for the
// worker, so that memberlist (which holds its node lock while it calls
// them) never waits on the overlay.
type event struct {
	kind eventKind
	name string
	addr string
	meta []byte
}

type eventKind int

const (
	evAlive       eventKind = iota // joined or updated
	evDown                         // dead or left
	evLeaveIntent                  // the node said it is leaving
	evRecheck                      // no membership change, but the rings may differ (new CRL)
)

func (o *Overlay) enqueue(ev event) {
	o.evMu.Lock()
	o.pending = append(o.pending, ev)
	o.evMu.Unlock()
	select {
	case o.kick <- struct{}{}:
	default:
	}
}

// run applies queued events, rebuilds the rings and notifies subscribers.
func (o *Overlay) run() {
	defer o.wg.Done()
	reap := time.NewTicker(time.Minute)
	defer reap.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-o.kick:
			// Let a burst of events (a mesh forming, a partition healing)
			// settle into one rebuild rather than one per event.
			select {
			case <-o.stop:
				return
			case <-time.After(rebuildSettle):
			}
		case <-reap.C:
			o.reap()
			continue
		}
		o.evMu.Lock()
		evs := o.pending
		o.pending = nil
		o.evMu.Unlock()
		o.apply(evs)
	}
}

func (o *Overlay) apply(evs []event) {
	now := time.Now()
	o.mu.Lock()
	for _, ev := range evs {
		ms := o.members[ev.name]
		switch ev.kind {
		case evAlive:
			md, serial, err := decodeMeta(ev.meta)
			if err != nil { // the alive delegate let it through: only our own hooks can
				o.log.Warn("overlay: member with unreadable metadata", "node", ev.name, "err", err)
				continue
			}
			if ms == nil {
				ms = &memberState{}
				o.members[ev.name] = ms
			}
			if ms.m.State != StateAlive {
				ms.since = now
				// Back from the dead, perhaps at a new address: the last
				// failed dial says nothing about it any more.
				o.tr.setReachable(ev.name, true)
			}
			ms.m = Member{Name: ev.name, Datacenter: md.DC, Roles: md.Roles, State: StateAlive, Address: ev.addr, Services: md.Services}
			ms.serial = serial
			delete(o.leftIntent, ev.name)
		case evDown:
			if ms == nil {
				continue
			}
			ms.m.State, ms.since = StateDead, now
			if t, ok := o.leftIntent[ev.name]; ok && now.Sub(t) < time.Minute {
				ms.m.State = StateLeft
			}
		case evLeaveIntent:
			o.leftIntent[ev.name] = now
			if ms != nil && ms.m.State == StateDead {
				ms.m.State = StateLeft
			}
		}
	}
	members := make([]Member, 0, len(o.members))
	for _, ms := range o.members {
		members = append(members, o.effective(ms))
	}
	// Rings are swapped before readers see the new members, so that a
	// member listed alive is on its rings.
	o.rebuild(members)
	o.mu.Unlock()
	o.notify()
}

// rebuild swaps in new rings for the roles whose alive members changed.
func (o *Overlay) rebuild(members []Member) {
	counts := map[State]int{}
	byRole := map[string][]ring.Node{}
	for _, m := range members {
		counts[o.reachable(m).State]++
		if m.State != StateAlive {
			continue
		}
		for _, r := range m.Roles {
			byRole[r] = append(byRole[r], ring.Node{Name: m.Name, Datacenter: m.Datacenter})
		}
	}
	for _, s := range []State{StateAlive, StateSuspect, StateDead, StateLeft} {
		o.met.members.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
	old := *o.rings.Load()
	next := make(map[string]*ring.Ring, len(byRole))
	changed := len(old) != len(byRole)
	for role, nodes := range byRole {
		slices.SortFunc(nodes, func(a, b ring.Node) int { return strings.Compare(a.Name, b.Name) })
		if prev := old[role]; prev != nil && slices.Equal(prev.Nodes(), nodes) {
			next[role] = prev
			continue
		}
		// Rings are immutable and usually several roles have the same
		// members (every node runs every role): build each set once.
		for other, r := range next {
			if slices.Equal(byRole[other], nodes) {
				next[role] = r
				break
			}
		}
		if next[role] == nil {
			next[role] = ring.New(nodes, o.cfg.Partitions)
		}
		changed = true
	}
	if changed {
		o.rings.Store(&next)
		o.met.ringRebuilds.Inc()
	}
}

// reap forgets members dead or gone longer than DeadRetention.
func (o *Overlay) reap() {
	now := time.Now()
	o.mu.Lock()
	for name, ms := range o.members {
		if (ms.m.State == StateDead || ms.m.State == StateLeft) && now.Sub(ms.since) > o.cfg.DeadRetention {
			delete(o.members, name)
		}
	}
	for name, t := range o.leftIntent {
		if now.Sub(t) > time.Minute {
			delete(o.leftIntent, name)
		}
	}
	o.mu.Unlock()
}
