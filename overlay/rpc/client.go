package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
)

// ErrUnknownNode is returned for a node the membership does not know, or
// knows to be dead or gone, or that advertises no RPC address.
var ErrUnknownNode = errors.New("rpc: no such live node")

// Membership is what the client needs of the overlay: where a node is, and
// when that may have changed.
type Membership interface {
	Member(name string) (overlay.Member, bool)
	Subscribe() (<-chan struct{}, func())
}

// ClientConfig configures a Client.
type ClientConfig struct {
	// Material is the node's TLS identity; required.
	Material *certs.Material
	// Logger receives refusals and pool changes; nil discards.
	Logger *slog.Logger
	// OnRefuse, when set, also sees every refused server.
	OnRefuse func(error)
	// MaxMsgSize is the largest message received, in bytes.
	MaxMsgSize int
	// ConnectTimeout bounds one connection attempt (TCP + TLS).
	ConnectTimeout time.Duration
	// MaxBackoff caps the wait between reconnection attempts to a node
	// that is still a member; kept short because a member that is not
	// dead is expected back soon.
	MaxBackoff time.Duration
	// Keepalive is the interval of HTTP/2 pings on a connection with calls
	// in flight, to notice a peer that vanished without closing.
	Keepalive time.Duration
}

// DefaultClientConfig returns the defaults; Material must still be set.
func DefaultClientConfig() ClientConfig {
	return ClientConfig{
		MaxMsgSize:     DefaultMaxMsgSize,
		ConnectTimeout: 3 * time.Second,
		MaxBackoff:     3 * time.Second,
		Keepalive:      10 * time.Second,
	}
}

// Client is a pool of one gRPC connection per node name, dialled on first
// use. It is safe for concurrent use.
type Client struct {
	cfg ClientConfig
	log *slog.Logger
	m   Membership

	mu     sync.Mutex
	conns  map[string]*pooled
	closed bool

	unsubscribe func()
	done        chan struct{}
	limit       *logLimiter
}

type pooled struct {
	addr string
	cc   *grpc.ClientConn
}

// NewClient builds a pool over m's members and starts dropping connections
// to members that leave or die.
func NewClient(cfg ClientConfig, m Membership) (*Client, error) {
	if cfg.Material == nil {
		return nil, errors.New("rpc: client: no TLS material")
	}
	if m == nil {
		return nil, errors.New("rpc: client: no membership")
	}
	def := DefaultClientConfig()
	if cfg.MaxMsgSize <= 0 {
		cfg.MaxMsgSize = def.MaxMsgSize
	}
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = def.ConnectTimeout
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = def.MaxBackoff
	}
	if cfg.Keepalive <= 0 {
		cfg.Keepalive = def.Keepalive
	}
	c := &Client{cfg: cfg, log: logger(cfg.Logger), m: m, conns: map[string]*pooled{}, done: make(chan struct{}), limit: newLogLimiter(10 * time.Second)}
	events, cancel := m.Subscribe()
	c.unsubscribe = cancel
	go c.watch(events)
	return c, nil
}

func (c *Client) watch(events <-chan struct{}) {
	for {
		select {
		case <-c.done:
			return
		case _, ok := <-events:
			if !ok {
				return
			}
			c.prune()
		}
	}
}

// prune closes connections to members that are gone, dead or moved.
func (c *Client) prune() {
	c.mu.Lock()
	var stale []*grpc.ClientConn
	for name, p := range c.conns {
		if addr, ok := c.address(name); !ok || addr != p.addr {
			stale = append(stale, p.cc)
			delete(c.conns, name)
			c.log.Debug("rpc: dropped connection", "node", name, "addr", p.addr)
		}
	}
	c.mu.Unlock()
	for _, cc := range stale {
		cc.Close()
	}
}

// address is the RPC address of a live member.
func (c *Client) address(name string) (string, bool) {
	mem, ok := c.m.Member(name)
	if !ok || mem.State == overlay.StateDead || mem.State == overlay.StateLeft {
		return "", false
	}
	addr := mem.Services[overlay.ServiceRPC]
	return addr, addr != ""
}

// Conn returns the pooled connection to node name, creating it when needed.
// The connection is established lazily by the first call; a call fails if
// the server's certificate does not name that node.
func (c *Client) Conn(name string) (grpc.ClientConnInterface, error) {
	addr, ok := c.address(name)
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownNode, name)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, errors.New("rpc: client closed")
	}
	if p, ok := c.conns[name]; ok {
		if p.addr == addr {
			return p.cc, nil
		}
		// The node came back elsewhere (a restart on another port).
		p.cc.Close()
		delete(c.conns, name)
	}
	cc, err := c.dial(name, addr)
	if err != nil {
		return nil, err
	}
	c.conns[name] = &pooled{addr: addr, cc: cc}
	return cc, nil
}

func (c *Client) dial(name, addr string) (*grpc.ClientConn, error) {
	onRefuse := func(err error) {
		if c.limit.allow(err) {
			c.log.Warn("rpc: refused a server", "node", name, "addr", addr, "reason", certs.ReasonOf(err), "err", err)
		}
		if c.cfg.OnRefuse != nil {
			c.cfg.OnRefuse(err)
		}
	}
	tlsConf := c.cfg.Material.ClientConfig(name, onRefuse)
	bo := backoff.DefaultConfig
	bo.BaseDelay = 100 * time.Millisecond
	bo.MaxDelay = c.cfg.MaxBackoff
	// passthrough: the address is already host:port from the member's
	// metadata; no resolver in between.
	cc, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsConf)),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bo, MinConnectTimeout: c.cfg.ConnectTimeout}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: c.cfg.Keepalive, Timeout: c.cfg.Keepalive / 2}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(c.cfg.MaxMsgSize), grpc.MaxCallSendMsgSize(c.cfg.MaxMsgSize)),
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
	)
	if err != nil {
		return nil, fmt.Errorf("rpc: dial %s at %s: %w", name, addr, err)
	}
	return cc, nil
}

// Ping calls the no-op Ping of node name and returns the round-trip time.
func (c *Client) Ping(ctx context.Context, name string) (time.Duration, error) {
	cc, err := c.Conn(name)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	resp, err := meshpb.NewNodeClient(cc).Ping(ctx, &meshpb.PingRequest{})
	if err != nil {
		return 0, fmt.Errorf("rpc: ping %s: %w", name, err)
	}
	if resp.GetName() != name {
		// Cannot happen with a verified certificate; a bug if it does.
		return 0, fmt.Errorf("rpc: ping %s answered by %q", name, resp.GetName())
	}
	return time.Since(start), nil
}

// Pooled lists the node names with a pooled connection.
func (c *Client) Pooled() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]string, 0, len(c.conns))
	for name := range c.conns {
		out = append(out, name)
	}
	return out
}

// Close closes every connection and stops watching the membership.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conns := c.conns
	c.conns = map[string]*pooled{}
	c.mu.Unlock()
	close(c.done)
	c.unsubscribe()
	for _, p := range conns {
		p.cc.Close()
	}
	return nil
}
