package proxy

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Registrar processes a REGISTER that reached its destination.
// received is "transport:ip:port" of the previous hop.
type Registrar interface {
	Register(ctx context.Context, req *sip.Request, received string) (*sip.Response, error)
	// Reregister is Register for a retransmission, octet for octet, of a
	// REGISTER that Register accepted: its credentials are not checked
	// again (their nonce count would be refused as a replay).
	Reregister(ctx context.Context, req *sip.Request, received string) (*sip.Response, error)
}

// Target is one contact of an AOR.
type Target struct {
	URI  string   // contact URI
	Path []string // Path header values (name-addr), outermost first
	Q    float64
	// Instance and RegID are the RFC 5626 keys of the binding: contacts of
	// one instance are flows to one UA, tried one at a time (§5.3).
	Instance string
	RegID    int
}

// Locator finds the contacts of an AOR ("user@domain").
type Locator interface {
	Locate(ctx context.Context, aor string) ([]Target, error)
}

// GRUUs resolves the GRUUs of the domain (RFC 5627 §5.3).
type GRUUs interface {
	// LocateGRUU returns the AOR a GRUU belongs to and the contacts of
	// the instance it names, none when the instance has no binding now.
	// A GRUU the domain did not issue, or no longer honours, is an error
	// carrying 404 (a *sipstatus.Error); other errors are failures.
	LocateGRUU(ctx context.Context, gruu sip.Uri) (aor string, contacts []Target, err error)
}

// Hop is one server of a foreign domain: transport (udp, tcp or tls) and
// "ip:port".
type Hop struct {
	Transport string
	Addr      string
}

// Resolver locates the SIP servers of a domain in the order RFC 3263 §4
// says to try them; dnsprov.ResolveSIP is one. An error wrapping
// ErrNoSuchDomain means the domain has none.
type Resolver interface {
	ResolveSIP(ctx context.Context, domain string) ([]Hop, error)
}

// Users says whether a subscriber exists (404 versus 480).
type Users interface {
	Known(ctx context.Context, user, domain string) (bool, error)
}

// Authenticator verifies digest credentials; *digest.Authenticator is one.
type Authenticator interface {
	Verify(ctx context.Context, req *sip.Request, proxy bool) (string, error)
}

// Mesh is what the proxy needs of the overlay.
type Mesh interface {
	// IsPeer reports whether ip is the SIP address of a mesh node.
	IsPeer(ip string) bool
	// RegistrarAddr is the UDP "host:port" of the node that should
	// process REGISTERs of aor (the registrar ring's owner).
	RegistrarAddr(aor string) (string, error)
	// Alone reports whether this node holds the registrar's state by
	// itself, so that a REGISTER is answered without waiting on a peer.
	Alone() bool
}

// Listen is one listener: transport udp, tcp, tls, ws or wss, and host:port.
type Listen struct {
	Transport string
	Addr      string
}

// Config configures a Proxy.
type Config struct {
	// Domain is the SIP domain served (the cluster's domain).
	Domain string
	// Listen are the listeners to open.
	Listen []Listen
	// TLS is the server configuration of tls and wss listeners.
	TLS *tls.Config
	// Registrar processes REGISTERs here; nil: they are forwarded to
	// Mesh.RegistrarAddr.
	Registrar Registrar
	// Locator finds contacts; required.
	Locator Locator
	// Users tells unknown users from unregistered ones; optional.
	Users Users
	// Auth challenges requests from subscribers (407); nil: no challenge.
	Auth Authenticator
	// Mesh identifies peers and registrars; required.
	Mesh Mesh
	// GRUUs resolves Request-URIs that are GRUUs of the domain; nil: they
	// are looked up like AORs.
	GRUUs GRUUs
	// RelayDomains are the foreign domains that subscribers' requests are
	// relayed to (RFC 3263 resolution through Resolver): "*" is any
	// domain, "*.example.net" its subdomains. Empty: requests for foreign
	// domains are refused with 403.
	RelayDomains []string
	// Resolver locates foreign domains' servers; required with RelayDomains.
	Resolver Resolver
	// FlowKey signs the flow tokens of this node (at least 16 bytes). It
	// must outlive a restart, so that a token issued before it still reads
	// as ours and a lost connection is told apart from a forged token (430
	// versus 403, RFC 5626 §5.3). nil: a random key.
	FlowKey []byte
	// FlowTimer is the Flow-Timer (RFC 5626 §5.4) given to outbound
	// registrations: how often, at most, the UA must send keep-alives on
	// its flow. 0: 120 s on connection-oriented flows, 29 s on UDP.
	FlowTimer time.Duration
	// Presence routes PUBLISH and SUBSCRIBE (event presence) to the
	// presence agent; nil: they are routed like other requests.
	Presence Presence
	// Media relays the RTP of the calls whose INVITE enters the mesh here
	// (see media.go); nil: SDP passes untouched.
	Media Media
	// RateLimit is the most messages per second accepted from one source
	// IP other than a mesh peer (pike); 0 means no limit. RateBurst is the
	// bucket size (default twice the rate).
	RateLimit float64
	RateBurst int
	// QueueDelay is the longest a request may wait in a UDP socket's
	// receive queue: one that waited longer is dropped unread, for its
	// client to retransmit (stale.go). 0: 250 ms.
	QueueDelay time.Duration
	// QueueWait, when set, is told how long each request that opens a
	// transaction waited in its UDP socket's receive queue (the kernel's
	// arrival stamp to the read): the process's governor of GOMAXPROCS
	// takes a wait as the sign that one P is not enough (internal/procs).
	// It runs in the reading goroutine and must be quick.
	QueueWait func(time.Duration)
	// RegisterQueue bounds the REGISTERs waiting for the stateless path's
	// workers (see stateless.go); beyond it they get 503. 0: 4096.
	RegisterQueue int
	// TransactionWait is how long the stateless REGISTER path remembers
	// an answer to repeat it to a retransmission (the part of Timer J it
	// stands in for, RFC 3261 §17.2.2), and how long an INVITE answered
	// 2xx is remembered to absorb its retransmissions (Timer L, RFC 6026
	// §8.7; accepted.go). 0: 64×T1, 32 s. sipgo's own transactions follow
	// its package timers, which the process sets (cmd/sipmesh) since they
	// are global.
	TransactionWait time.Duration
	// Logger; nil discards.
	Logger *slog.Logger
}

// Proxy is a running SIP edge.
type Proxy struct {
	cfg    Config
	log    *slog.Logger
	ua     *sipgo.UserAgent
	srv    *sipgo.Server
	tp     *sip.TransportLayer
	txl    *sip.TransactionLayer
	valid  *sipmsg.Validator
	flows  *flowKeys
	pike   *pike
	ctx    context.Context
	cancel context.CancelFunc

	self  map[string]bool                   // our IPs
	ports map[int]bool                      // our ports
	via   map[string]string                 // transport (lower) -> our host:port
	udp   map[netip.AddrPort]net.PacketConn // local address -> socket, for the stateless path's answers
	// udpReaders are every UDP socket, several per address (listenUDP).
	udpReaders []net.PacketConn
	lns        []listener
	wg         sync.WaitGroup

	subs sync.Map // Call-ID -> chan struct{}: SUBSCRIBEs forwarded, final response not yet relayed

	stateless *statelessRegister // nil: no local registrar
	tagSeed   maphash.Seed       // keys the To tags of stateless 407s (challenge.go)
	accepted  acceptedInvites
	stale     *staleRequests
	// filter is what each message goes through before sipgo parses it:
	// pike, sipmsg, the stateless REGISTER path.
	filter sip.TransportReadFilter

	media mediaCalls // calls whose media this node anchors (Config.Media)
}

// New binds the listeners; Serve starts answering.
func New(cfg Config) (p *Proxy, err error) {
	if cfg.Domain == "" || cfg.Locator == nil || cfg.Mesh == nil {
		return nil, errors.New("proxy: domain, locator and mesh are required")
	}
	if len(cfg.Listen) == 0 {
		return nil, errors.New("proxy: no SIP listener configured (key \"sip.listen\")")
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	key := cfg.FlowKey
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key)
	} else if len(key) < 16 {
		return nil, fmt.Errorf("proxy: the flow key must be at least 16 bytes, got %d", len(key))
	}
	if len(cfg.RelayDomains) > 0 && cfg.Resolver == nil {
		return nil, errors.New("proxy: relaying to foreign domains needs a resolver")
	}
	p = &Proxy{cfg: cfg, log: log, flows: &flowKeys{key: key},
		self: map[string]bool{}, ports: map[int]bool{}, via: map[string]string{}, udp: map[netip.AddrPort]net.PacketConn{}}
	p.cfg.Domain = strings.ToLower(cfg.Domain)
	p.media.m = map[string]*mediaCall{}
	p.valid = sipmsg.New(sipmsg.WithLogger(log))
	if cfg.RateLimit > 0 {
		p.pike = newPike(cfg.RateLimit, cfg.RateBurst, log)
	}
	p.filter = p.readFilter(p.valid.DatagramFilter(p.reject, statelessPaths{p}))
	p.tagSeed = maphash.MakeSeed()
	wait := cmp.Or(cfg.TransactionWait, 64*sip.T1)
	p.accepted = acceptedInvites{seed: maphash.MakeSeed(), keys: newRecent[struct{}](wait)}
	p.stale = newStaleRequests(cmp.Or(cfg.QueueDelay, defaultQueueDelay), log)
	p.stale.waited = cfg.QueueWait
	if cfg.Registrar != nil {
		p.stateless = newStatelessRegister(cmp.Or(cfg.RegisterQueue, defaultRegisterQueue), wait)
	}
	defer func() {
		if err != nil {
			p.closeListeners()
		}
	}()
	for _, l := range cfg.Listen {
		tr := sipmsg.Transport(l.Transport)
		switch tr {
		case "udp":
			conns, rcvbuf, err := listenUDP(l.Addr, p.stale)
			if err != nil {
				return nil, fmt.Errorf("proxy: listen %s://%s (key \"sip.listen\"): %w", tr, l.Addr, err)
			}
			if rcvbuf < udpReadBuffer {
				log.Warn("proxy: UDP receive buffer smaller than asked; bursts may be dropped: raise sysctl net.core.rmem_max",
					"listen", l.Addr, "bytes", rcvbuf, "asked", udpReadBuffer)
			}
			c := conns[0]
			p.udp[udpAddrPort(c.LocalAddr())] = c
			p.udpReaders = append(p.udpReaders, conns...)
			p.addSelf(tr, c.LocalAddr().String())
		case "tcp", "ws", "tls", "wss":
			var ln net.Listener
			if tr == "tls" || tr == "wss" {
				if cfg.TLS == nil {
					return nil, fmt.Errorf("proxy: listen %s://%s: no TLS configuration", tr, l.Addr)
				}
				ln, err = tls.Listen("tcp", l.Addr, cfg.TLS)
			} else {
				ln, err = net.Listen("tcp", l.Addr)
			}
			if err != nil {
				return nil, fmt.Errorf("proxy: listen %s://%s (key \"sip.listen\"): %w", tr, l.Addr, err)
			}
			p.lns = append(p.lns, listener{tr, ln})
			p.addSelf(tr, ln.Addr().String())
		default:
			return nil, fmt.Errorf("proxy: unknown transport %q (udp, tcp, tls, ws, wss)", l.Transport)
		}
	}
	txLog := log.With("component", "sipgo")
	p.ua, err = sipgo.NewUA(
		sipgo.WithUserAgent("sipmesh"),
		sipgo.WithUserAgenTLSConfig(cfg.TLS),
		sipgo.WithUserAgentTransportLayerOptions(
			sip.WithTransportLayerLogger(txLog),
			sip.WithTransportLayerReadFilter(p.filter),
		),
		sipgo.WithUserAgentTransactionLayerOptions(
			sip.WithTransactionLayerLogger(txLog),
			sip.WithTransactionLayerUnhandledResponseHandler(p.strayResponse),
		),
	)
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.srv, err = sipgo.NewServer(p.ua, sipgo.WithServerLogger(txLog))
	if err != nil {
		return nil, fmt.Errorf("proxy: %w", err)
	}
	p.tp, p.txl = p.ua.TransportLayer(), p.ua.TransactionLayer()
	p.srv.OnNoRoute(p.onRequest)
	for _, m := range []sip.RequestMethod{sip.INVITE, sip.ACK, sip.CANCEL, sip.BYE, sip.REGISTER, sip.OPTIONS,
		sip.SUBSCRIBE, sip.NOTIFY, sip.REFER, sip.INFO, sip.MESSAGE, sip.PRACK, sip.UPDATE, sip.PUBLISH} {
		p.srv.OnRequest(m, p.onRequest)
	}
	return p, nil
}

func (p *Proxy) addSelf(tr, addr string) {
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	p.self[host] = true
	p.ports[n] = true
	if _, ok := p.via[tr]; !ok {
		p.via[tr] = addr
	}
}

// Addrs returns the bound listeners, transport -> host:port.
func (p *Proxy) Addrs() map[string]string {
	out := make(map[string]string, len(p.via))
	for k, v := range p.via {
		out[k] = v
	}
	return out
}

// Serve answers on every listener until ctx is done or Close is called.
func (p *Proxy) Serve(ctx context.Context) {
	p.ctx, p.cancel = context.WithCancel(ctx)
	if p.stateless != nil {
		for range registerWorkers {
			p.wg.Add(1)
			go p.registerWorker()
		}
	}
	for _, c := range p.udpReaders {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			if err := p.srv.ServeUDP(c); err != nil && !errors.Is(err, net.ErrClosed) {
				p.log.Error("proxy: UDP listener stopped", "addr", c.LocalAddr().String(), "err", err)
			}
		}()
	}
	for _, l := range p.lns {
		tr, ln := l.tr, l.ln
		p.wg.Add(1)
		go func(tr string, ln net.Listener) {
			defer p.wg.Done()
			var err error
			switch strings.ToLower(tr) {
			case "tcp":
				err = p.srv.ServeTCP(ln)
			case "tls":
				err = p.srv.ServeTLS(ln)
			case "ws":
				err = p.srv.ServeWS(ln)
			case "wss":
				err = p.srv.ServeWSS(ln)
			}
			if err != nil && !errors.Is(err, net.ErrClosed) {
				p.log.Error("proxy: listener stopped", "transport", tr, "addr", ln.Addr().String(), "err", err)
			}
		}(tr, ln)
	}
	go func() {
		<-p.ctx.Done()
		p.Close()
	}()
}

type listener struct {
	tr string
	ln net.Listener
}

// Close stops the listeners and the transaction layer.
func (p *Proxy) Close() error {
	if p.cancel != nil {
		p.cancel()
	}
	p.closeListeners()
	if p.ua != nil {
		p.ua.Close()
	}
	return nil
}

func (p *Proxy) closeListeners() {
	for _, c := range p.udpReaders {
		c.Close()
	}
	for _, l := range p.lns {
		l.ln.Close()
	}
}

// readFilter drops datagrams of sources over the rate limit before they
// are parsed; stream transports are limited per request in onRequest.
func (p *Proxy) readFilter(next sip.TransportReadFilter) sip.TransportReadFilter {
	if p.pike == nil {
		return next
	}
	return func(props sip.TransportReadProps, data []byte) ([]byte, error) {
		if strings.EqualFold(props.Transport, "udp") && props.RemoteAddr != nil {
			if !p.admit(remoteIP(props.RemoteAddr)) {
				return nil, nil
			}
		}
		return next(props, data)
	}
}

// admit reports whether a message from ip may be processed.
func (p *Proxy) admit(ip string) bool {
	return p.pike == nil || p.cfg.Mesh.IsPeer(ip) || p.pike.allow(ip)
}

// udpSocket is the listening socket whose address is local, the address a
// datagram came to.
func (p *Proxy) udpSocket(local net.Addr) (net.PacketConn, bool) {
	c, ok := p.udp[udpAddrPort(local)]
	return c, ok
}

// udpAddrPort is a UDP address as a map key, IPv4 unmapped, without the
// allocations of its String (a lookup per datagram answered).
func udpAddrPort(a net.Addr) netip.AddrPort {
	u, ok := asUDPAddr(a)
	if !ok {
		return netip.AddrPort{}
	}
	ap := u.AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// reject answers a datagram that sipmsg refused, from the socket it came
// to (RFC 3261 §18.2.2).
func (p *Proxy) reject(r sipmsg.Rejection) {
	req, _ := r.Message.(*sip.Request)
	res := sipstatus.Response(req, r.Err)
	p.log.Debug("proxy: message rejected", "from", fmt.Sprint(r.Props.RemoteAddr), "err", r.Err)
	if res == nil || r.Props.RemoteAddr == nil {
		return
	}
	if strings.EqualFold(r.Props.Transport, "udp") {
		if c, ok := p.udpSocket(r.Props.LocalAddr); ok {
			c.WriteTo([]byte(res.String()), r.Props.RemoteAddr)
		}
		return
	}
	if c, err := p.tp.GetConnection(r.Props.Transport, r.Props.RemoteAddr.String()); err == nil {
		c.WriteMsg(res)
		c.TryClose()
	}
}
