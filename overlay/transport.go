package overlay

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-sockaddr"
	"github.com/hashicorp/memberlist"

	"github.com/sipmesh/sipmesh/certs"
)

// Wire format of a connection after the TLS handshake, written by the
// dialer:
//
//	version(1) kind(1) len(1) memberlist-name len(1) advertised-gossip-addr
//
// then, on a packet connection, frames of length(4, big endian) + payload;
// on a stream connection, memberlist's own bytes.
const (
	wireVersion = 1
	kindPacket  = 1
	kindStream  = 2
)

const (
	dirInbound  = "inbound"
	dirOutbound = "outbound"
)

var errTransportClosed = errors.New("overlay: transport is shut down")

// transportConfig configures a transport. Zero durations and sizes take
// the defaults of setDefaults.
type transportConfig struct {
	Material *certs.Material
	BindAddr string // IP; "" or "0.0.0.0" binds every address and advertises a private IP
	Port     int    // 0 = ephemeral
	// Name is the memberlist node name claimed in connection headers: the
	// certificate's, except for the impostors of tests.
	Name string

	HandshakeTimeout  time.Duration // TLS handshake plus header (5s)
	PacketDialTimeout time.Duration // dial of a pooled packet connection (2s)
	WriteTimeout      time.Duration // one packet frame (2s)
	IdleTimeout       time.Duration // a pooled packet connection unused this long is closed (2m)
	RedialBackoff     time.Duration // after a failed dial, packets to that peer are dropped this long (250ms)
	SuspectWindow     time.Duration // a failed dial makes a peer unreachable this long, unless a connection succeeds (5s)
	QueueLen          int           // packets queued per destination before dropping (256)
	MaxPacketSize     int           // a larger frame closes the connection (1 MiB)

	Logger   *slog.Logger
	Metrics  *metrics
	Refusals *refusals

	// trustAnyServer dials without verifying the listener's certificate,
	// so that a rogue of tests gets as far as showing its own.
	trustAnyServer bool
}

func (c *transportConfig) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 5*time.Second)
	def(&c.PacketDialTimeout, 2*time.Second)
	def(&c.WriteTimeout, 2*time.Second)
	def(&c.IdleTimeout, 2*time.Minute)
	def(&c.RedialBackoff, 250*time.Millisecond)
	def(&c.SuspectWindow, 5*time.Second)
	if c.QueueLen <= 0 {
		c.QueueLen = 256
	}
	if c.MaxPacketSize <= 0 {
		c.MaxPacketSize = 1 << 20
	}
	if c.Name == "" && c.Material != nil {
		c.Name = c.Material.Self.Name
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
}

// transport is a memberlist.NodeAwareTransport over mutual TLS 1.3.
// Packets travel over pooled, persistent, full-duplex connections, framed by
// length, so that a probe costs no handshake: the connection a peer opened
// to send its packets also carries ours back to it, so a pair of nodes
// needs one handshake, not two. Every stream is a fresh connection. Every
// open connection is tracked with its peer's verified identity so that a
// revocation closes it.
type transport struct {
	cfg transportConfig
	log *slog.Logger
	ln  net.Listener

	advAddr string // advertised gossip address, host:port
	advIP   net.IP
	advPort int

	packetCh chan *memberlist.Packet
	streamCh chan net.Conn
	done     chan struct{}
	ctx      context.Context // cancelled by Shutdown: ends dials and handshakes under way
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	// drain, set before Shutdown, gives queued packets (a leave message)
	// a moment to go out.
	drain    atomic.Bool
	inFlight atomic.Int64 // packets queued or being written

	mu          sync.Mutex
	closed      bool
	queues      map[string]*peerQueue // name "@" addr -> pooled packet sender
	offered     map[string]*tconn     // name "@" advertised addr -> inbound packet connection usable to send
	conns       map[*tconn]struct{}
	unreachable map[string]time.Time // node name -> when a dial to it last failed, since no success
}

var _ memberlist.NodeAwareTransport = (*transport)(nil)

func newTransport(cfg transportConfig) (*transport, error) {
	cfg.setDefaults()
	if cfg.Material == nil {
		return nil, errors.New("overlay: transport needs the node's TLS material")
	}
	if cfg.Metrics == nil {
		m, err := newMetrics(nil)
		if err != nil {
			return nil, err
		}
		cfg.Metrics = m
	}
	if cfg.Refusals == nil {
		cfg.Refusals = newRefusals(cfg.Logger, cfg.Metrics, 10*time.Second)
	}
	bind := cfg.BindAddr
	if bind == "" {
		bind = "0.0.0.0"
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(bind, strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, fmt.Errorf("overlay: gossip listener on %s port %d: %w (is another node bound to it?)", bind, cfg.Port, err)
	}
	bound := ln.Addr().(*net.TCPAddr)
	ip, _ := netip.AddrFromSlice(bound.IP)
	if ip.IsUnspecified() || !ip.IsValid() {
		priv, err := sockaddr.GetPrivateIP()
		if err == nil && priv != "" {
			ip, err = netip.ParseAddr(priv)
		}
		if err != nil || priv == "" {
			ln.Close()
			return nil, fmt.Errorf("overlay: bound to %s but found no private IP to advertise: set node.address", bind)
		}
	}
	ip = ip.Unmap()
	ctx, cancel := context.WithCancel(context.Background())
	t := &transport{
		ctx:         ctx,
		cancel:      cancel,
		cfg:         cfg,
		log:         cfg.Logger,
		ln:          ln,
		advAddr:     netip.AddrPortFrom(ip, uint16(bound.Port)).String(),
		advIP:       net.IP(ip.AsSlice()),
		advPort:     bound.Port,
		packetCh:    make(chan *memberlist.Packet, 256),
		streamCh:    make(chan net.Conn),
		done:        make(chan struct{}),
		queues:      map[string]*peerQueue{},
		conns:       map[*tconn]struct{}{},
		offered:     map[string]*tconn{},
		unreachable: map[string]time.Time{},
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return t, nil
}

// boundPort is the port the listener is bound to.
func (t *transport) boundPort() int { return t.ln.Addr().(*net.TCPAddr).Port }

// FinalAdvertiseAddr implements memberlist.Transport.
func (t *transport) FinalAdvertiseAddr(ip string, port int) (net.IP, int, error) {
	if ip == "" {
		return t.advIP, t.advPort, nil
	}
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return nil, 0, fmt.Errorf("overlay: advertise address %q: %w", ip, err)
	}
	if port == 0 {
		port = t.advPort
	}
	return net.IP(a.Unmap().AsSlice()), port, nil
}

// PacketCh implements memberlist.Transport.
func (t *transport) PacketCh() <-chan *memberlist.Packet { return t.packetCh }

// StreamCh implements memberlist.Transport.
func (t *transport) StreamCh() <-chan net.Conn { return t.streamCh }

// WriteTo implements memberlist.Transport.
func (t *transport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress queues a packet on the pooled connection to a and returns
// at once: packets are best effort, as over UDP, so that a slow or dead
// peer never stalls memberlist's probe and gossip loops.
func (t *transport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if len(b) > t.cfg.MaxPacketSize {
		return now, fmt.Errorf("overlay: packet of %d bytes to %s exceeds %d", len(b), a.String(), t.cfg.MaxPacketSize)
	}
	frame := make([]byte, 4+len(b))
	binary.BigEndian.PutUint32(frame, uint32(len(b)))
	copy(frame[4:], b)

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return now, errTransportClosed
	}
	key := a.Name + "@" + a.Addr
	q := t.queues[key]
	if q == nil {
		q = &peerQueue{key: key, addr: a.Addr, name: a.Name, ch: make(chan []byte, t.cfg.QueueLen)}
		t.queues[key] = q
		t.wg.Add(1)
		go t.runQueue(q)
	}
	select {
	case q.ch <- frame:
		t.inFlight.Add(1)
		return now, nil
	default:
		return now, fmt.Errorf("overlay: send queue to %s is full; packet dropped", a.String())
	}
}

// DialTimeout implements memberlist.Transport.
func (t *transport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

// DialAddressTimeout implements memberlist.NodeAwareTransport: a fresh
// stream connection. When a.Name is known, the listener's certificate must
// name that node.
func (t *transport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	c, err := t.dial(a.Addr, a.Name, kindStream, timeout)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Shutdown implements memberlist.Transport: it closes the listener and
// every connection and waits for the transport's goroutines.
func (t *transport) Shutdown() error {
	if t.drain.Load() {
		// Bounded: a peer that does not read must not hold us up.
		deadline := time.Now().Add(time.Second)
		for t.inFlight.Load() > 0 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.done)
	t.cancel()
	conns := make([]*tconn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	err := t.ln.Close()
	for _, c := range conns {
		c.Close()
	}
	t.wg.Wait()
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return fmt.Errorf("overlay: close gossip listener: %w", err)
	}
	return nil
}

// closeRevoked closes every connection, inbound and outbound, whose peer
// certificate is now on the revocation list, and returns their identities.
func (t *transport) closeRevoked() []certs.Identity {
	var victims []*tconn
	t.mu.Lock()
	for c := range t.conns {
		if c.id.Serial != nil && t.cfg.Material.Revoked(c.id.Serial) {
			victims = append(victims, c)
		}
	}
	t.mu.Unlock()
	ids := make([]certs.Identity, 0, len(victims))
	for _, c := range victims {
		c.Close()
		ids = append(ids, c.id)
	}
	return ids
}

// nameAt returns the certificate name of the node listening at addr, as
// learned from an open connection this node dialed there: proof of who
// answers at that address, unlike what an inbound header claims.
func (t *transport) nameAt(addr string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if c.dir == dirOutbound && c.peerAddr == addr && c.id.Name != "" {
			return c.id.Name, true
		}
	}
	return "", false
}

// identityOf returns the verified identity of node name from any open
// connection with it.
func (t *transport) identityOf(name string) (certs.Identity, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		if c.id.Name == name && c.id.Serial != nil {
			return c.id, true
		}
	}
	return certs.Identity{}, false
}

// isUnreachable reports whether a dial to node name failed within the
// suspect window and no connection with it succeeded since.
func (t *transport) isUnreachable(name string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	failed, ok := t.unreachable[name]
	if ok && time.Since(failed) > t.cfg.SuspectWindow {
		delete(t.unreachable, name)
		return false
	}
	return ok
}

func (t *transport) setReachable(name string, ok bool) {
	if name == "" {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if ok {
		delete(t.unreachable, name)
	} else {
		t.unreachable[name] = time.Now()
	}
}

// openConns is the number of tracked connections.
func (t *transport) openConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

func (t *transport) serverConfig(onRefuse func(error)) *tls.Config {
	c := t.cfg.Material.ServerConfig(false, onRefuse)
	// Every connection is a full handshake: the CRL check never rests on
	// an earlier one, and pooling makes handshakes rare anyway.
	c.SessionTicketsDisabled = true
	return c
}

func (t *transport) clientConfig(expectName string, onRefuse func(error)) *tls.Config {
	c := t.cfg.Material.ClientConfig(expectName, onRefuse)
	if t.cfg.trustAnyServer {
		c.VerifyPeerCertificate, c.VerifyConnection = nil, nil
	}
	return c
}

// dial opens a TLS connection to addr and writes the connection header.
func (t *transport) dial(addr, expectName string, kind byte, timeout time.Duration) (*tconn, error) {
	select {
	case <-t.done:
		return nil, errTransportClosed
	default:
	}
	// The callback runs inside the handshake, on this goroutine.
	var refusal error
	ctx, cancel := context.WithTimeout(t.ctx, timeout)
	defer cancel()
	nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.setReachable(expectName, false)
		return nil, fmt.Errorf("overlay: dial %s: %w", addr, err)
	}
	conn := tls.Client(t.counted(nc), t.clientConfig(expectName, func(err error) { refusal = err }))
	if err := conn.HandshakeContext(ctx); err != nil {
		conn.Close()
		t.setReachable(expectName, false)
		if refusal != nil {
			t.cfg.Refusals.refuse(string(certs.ReasonOf(refusal)), refusalPeer(refusal), addr, "dial", refusal)
			return nil, fmt.Errorf("overlay: dial %s: %w", addr, refusal)
		}
		return nil, fmt.Errorf("overlay: dial %s: TLS handshake: %w", addr, err)
	}
	// Verified during the handshake; this only reads what it said.
	id, _ := certs.PeerIdentity(conn.ConnectionState())
	hdr := make([]byte, 0, 4+len(t.cfg.Name)+len(t.advAddr))
	hdr = append(hdr, wireVersion, kind, byte(len(t.cfg.Name)))
	hdr = append(hdr, t.cfg.Name...)
	hdr = append(hdr, byte(len(t.advAddr)))
	hdr = append(hdr, t.advAddr...)
	_ = conn.SetWriteDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(hdr); err != nil {
		conn.Close()
		t.setReachable(expectName, false)
		return nil, fmt.Errorf("overlay: dial %s: write header: %w", addr, err)
	}
	_ = conn.SetWriteDeadline(time.Time{})
	t.setReachable(expectName, true)
	return t.track(conn, id, dirOutbound, addr)
}

// refusalPeer is what a refused peer claimed to be.
func refusalPeer(err error) string {
	var re *certs.RefusalError
	if errors.As(err, &re) && re.Peer != "" {
		return re.Peer
	}
	return "unknown"
}

func (t *transport) acceptLoop() {
	defer t.wg.Done()
	for {
		raw, err := t.ln.Accept()
		if err != nil {
			select {
			case <-t.done:
				return
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			t.log.Error("overlay: gossip listener failed; no peer can reach this node", "addr", t.advAddr, "err", err)
			return
		}
		t.wg.Add(1)
		go func() {
			defer t.wg.Done()
			t.serve(raw)
		}()
	}
}

// serve authenticates an inbound connection and hands it to memberlist.
func (t *transport) serve(raw net.Conn) {
	remote := raw.RemoteAddr().String()
	var refusal error
	conn := tls.Server(t.counted(raw), t.serverConfig(func(err error) { refusal = err }))
	_ = conn.SetDeadline(time.Now().Add(t.cfg.HandshakeTimeout))
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.HandshakeTimeout)
	err := conn.HandshakeContext(ctx)
	cancel()
	if err != nil {
		conn.Close()
		if refusal != nil {
			t.cfg.Refusals.refuse(string(certs.ReasonOf(refusal)), refusalPeer(refusal), remote, "handshake", refusal)
			return
		}
		t.log.Debug("overlay: inbound TLS handshake failed", "remote", remote, "err", err)
		return
	}
	id, _ := certs.PeerIdentity(conn.ConnectionState())
	kind, name, adv, err := readHeader(conn)
	if err != nil {
		conn.Close()
		t.log.Debug("overlay: bad connection header", "remote", remote, "peer", id.String(), "err", err)
		return
	}
	if name != id.Name {
		conn.Close()
		refusal := certs.Refusal(certs.ReasonNameMismatch, id.String(), "claims the memberlist name %q", name)
		t.cfg.Refusals.refuse(string(certs.ReasonNameMismatch), id.String(), remote, "header", refusal)
		return
	}
	from, err := netip.ParseAddrPort(adv)
	if err != nil {
		conn.Close()
		t.log.Debug("overlay: bad advertised address in header", "remote", remote, "peer", id.String(), "addr", adv)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	c, err := t.track(conn, id, dirInbound, adv)
	if err != nil {
		return
	}
	t.setReachable(id.Name, true)
	switch kind {
	case kindPacket:
		t.offer(c, id.Name+"@"+adv)
		t.readPackets(c, net.TCPAddrFromAddrPort(from))
	case kindStream:
		select {
		case t.streamCh <- c:
		case <-t.done:
			c.Close()
		}
	default:
		t.log.Debug("overlay: unknown connection kind", "remote", remote, "kind", kind)
		c.Close()
	}
}

func readHeader(r io.Reader) (kind byte, name, addr string, err error) {
	var fixed [3]byte
	if _, err = io.ReadFull(r, fixed[:]); err != nil {
		return 0, "", "", err
	}
	if fixed[0] != wireVersion {
		return 0, "", "", fmt.Errorf("wire version %d, want %d", fixed[0], wireVersion)
	}
	buf := make([]byte, int(fixed[2])+1)
	if _, err = io.ReadFull(r, buf); err != nil {
		return 0, "", "", err
	}
	abuf := make([]byte, buf[fixed[2]])
	if _, err = io.ReadFull(r, abuf); err != nil {
		return 0, "", "", err
	}
	return fixed[1], string(buf[:fixed[2]]), string(abuf), nil
}

// offer makes an inbound packet connection the one this node sends its
// own packets to that peer on, unless one is in use already.
func (t *transport) offer(c *tconn, key string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if prev := t.offered[key]; prev == nil || prev.isClosed() {
		t.offered[key] = c
		c.offeredAs = key
	}
}

// takeOffered returns the inbound packet connection offered for key.
func (t *transport) takeOffered(key string) *tconn {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := t.offered[key]
	if c == nil || c.isClosed() {
		return nil
	}
	return c
}

// readPackets delivers the frames of a packet connection, either way,
// until it closes or stays idle well past the sender's own idle timeout.
func (t *transport) readPackets(c *tconn, from net.Addr) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 32<<10)
	var lenBuf [4]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(t.cfg.IdleTimeout + t.cfg.IdleTimeout/2))
		if _, err := io.ReadFull(r, lenBuf[:]); err != nil {
			// TLS 1.3 tells a client that the server refused its
			// certificate only now, after its handshake is done.
			var alert tls.AlertError
			if c.dir == dirOutbound && !c.isClosed() && errors.As(err, &alert) {
				t.cfg.Refusals.refusedBy(c.id.String(), c.peerAddr, err)
			}
			return
		}
		n := binary.BigEndian.Uint32(lenBuf[:])
		if n > uint32(t.cfg.MaxPacketSize) {
			t.log.Warn("overlay: bad packet frame; closing connection", "peer", c.id.String(), "remote", c.RemoteAddr().String(), "length", n, "max", t.cfg.MaxPacketSize)
			return
		}
		buf := make([]byte, n)
		if _, err := io.ReadFull(r, buf); err != nil {
			return
		}
		select {
		case t.packetCh <- &memberlist.Packet{Buf: buf, From: from, Timestamp: time.Now()}:
		case <-t.done:
			return
		}
	}
}

// peerQueue is the pooled packet sender to one destination.
type peerQueue struct {
	key, addr, name string
	ch              chan []byte
}

func (t *transport) runQueue(q *peerQueue) {
	defer t.wg.Done()
	var c *tconn
	var backoffUntil time.Time
	defer func() {
		if c != nil {
			c.Close()
		}
		// Whatever is still queued will never be sent.
		t.inFlight.Add(-int64(len(q.ch)))
	}()
	idle := time.NewTimer(t.cfg.IdleTimeout)
	defer idle.Stop()
	for {
		select {
		case <-t.done:
			return
		case <-idle.C:
			t.mu.Lock()
			if len(q.ch) == 0 {
				delete(t.queues, q.key)
				t.mu.Unlock()
				return
			}
			t.mu.Unlock()
			idle.Reset(t.cfg.IdleTimeout)
		case frame := <-q.ch:
			idle.Reset(t.cfg.IdleTimeout)
			c, backoffUntil = t.send(q, c, frame, backoffUntil)
			t.inFlight.Add(-1)
		}
	}
}

// send writes one frame on c, (re)dialing when needed, and returns the
// connection to use next.
func (t *transport) send(q *peerQueue, c *tconn, frame []byte, backoffUntil time.Time) (*tconn, time.Time) {
	// A pooled connection the peer has just closed (restart, idle) may
	// still take one write: retry once on a fresh connection.
	for attempt := 0; attempt < 2; attempt++ {
		if c == nil || c.isClosed() {
			c = t.takeOffered(q.key)
		}
		if c == nil {
			if time.Now().Before(backoffUntil) {
				return nil, backoffUntil
			}
			var err error
			if c, err = t.dial(q.addr, q.name, kindPacket, t.cfg.PacketDialTimeout); err != nil {
				t.log.Debug("overlay: packet dropped", "to", q.addr, "name", q.name, "err", err)
				return nil, time.Now().Add(t.cfg.RedialBackoff)
			}
			from := net.Addr(&net.TCPAddr{})
			if ap, err := netip.ParseAddrPort(q.addr); err == nil {
				from = net.TCPAddrFromAddrPort(ap)
			} else if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
				from = ta
			}
			t.wg.Add(1)
			go func(c *tconn) {
				defer t.wg.Done()
				t.readPackets(c, from)
			}(c)
		}
		_ = c.SetWriteDeadline(time.Now().Add(t.cfg.WriteTimeout))
		if _, err := c.Write(frame); err == nil {
			return c, time.Time{}
		}
		c.Close()
		c = nil
	}
	return nil, time.Time{}
}

// tconn is a tracked, authenticated connection.
type tconn struct {
	net.Conn
	t        *transport
	id       certs.Identity
	dir      string
	peerAddr string // outbound: the address dialed; inbound: the advertised one
	closed   atomic.Bool
	once     sync.Once
	// offeredAs is the key under which an inbound packet connection is
	// offered for sending; written before it is published, under t.mu.
	offeredAs string
}

func (t *transport) track(conn net.Conn, id certs.Identity, dir, peerAddr string) (*tconn, error) {
	c := &tconn{Conn: conn, t: t, id: id, dir: dir, peerAddr: peerAddr}
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		conn.Close()
		return nil, errTransportClosed
	}
	t.conns[c] = struct{}{}
	t.mu.Unlock()
	t.cfg.Metrics.conns.WithLabelValues(dir).Inc()
	return c, nil
}

// countingConn counts the bytes of a TCP connection, TLS records included.
type countingConn struct {
	net.Conn
	m *metrics
}

func (t *transport) counted(c net.Conn) net.Conn { return countingConn{Conn: c, m: t.cfg.Metrics} }

func (c countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.m.recvBytes.Add(float64(n))
	}
	return n, err
}

func (c countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 {
		c.m.sentBytes.Add(float64(n))
	}
	return n, err
}

func (c *tconn) isClosed() bool { return c.closed.Load() }

// Close untracks and closes the connection; it may be called many times.
func (c *tconn) Close() error {
	c.once.Do(func() {
		c.closed.Store(true)
		c.t.mu.Lock()
		delete(c.t.conns, c)
		if c.offeredAs != "" && c.t.offered[c.offeredAs] == c {
			delete(c.t.offered, c.offeredAs)
		}
		c.t.mu.Unlock()
		c.t.cfg.Metrics.conns.WithLabelValues(c.dir).Dec()
	})
	// tls.Conn.Close sends close_notify, which must not block on a peer
	// that stopped reading.
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	return c.Conn.Close()
}
