package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
)

// DefaultMaxMsgSize bounds one message either way. Senders of bulk data
// (handoff, anti-entropy) batch well below it.
const DefaultMaxMsgSize = 16 << 20

// Flow-control windows of every node connection, both ways. Setting them
// turns off gRPC's bandwidth-delay estimator, which otherwise answers
// received data with a PING and its ACK: two more HTTP/2 frames, TLS
// records and write system calls on a connection whose RPCs are each a few
// hundred bytes. The fixed windows still let a stream carry 4 MiB per
// round trip (80 MiB/s at 50 ms between datacenters) and a connection
// 16 MiB, far above what replication sends.
const (
	streamWindow = 4 << 20
	connWindow   = 16 << 20
)

// ServerConfig configures a Server.
type ServerConfig struct {
	// Material is the node's TLS identity; required.
	Material *certs.Material
	// Logger receives refusals and serving errors; nil discards.
	Logger *slog.Logger
	// OnRefuse, when set, also sees every refused peer (e.g. to count
	// refusals by certs.ReasonOf).
	OnRefuse func(error)
	// MaxMsgSize is the largest message received, in bytes.
	MaxMsgSize int
	// KeepaliveMinTime is the shortest client keepalive interval accepted;
	// it must not exceed the clients' ClientConfig.Keepalive.
	KeepaliveMinTime time.Duration
	// RefusalLogWindow limits refusal logs to one per peer and reason per
	// window, so that a misconfigured peer retrying cannot flood the log;
	// OnRefuse still sees every refusal.
	RefusalLogWindow time.Duration
}

// DefaultServerConfig returns the defaults; Material must still be set.
func DefaultServerConfig() ServerConfig {
	return ServerConfig{MaxMsgSize: DefaultMaxMsgSize, KeepaliveMinTime: 5 * time.Second, RefusalLogWindow: 10 * time.Second}
}

// Server is a node's gRPC server. Register services (it is a
// grpc.ServiceRegistrar) before Serve or Listen.
type Server struct {
	cfg  ServerConfig
	log  *slog.Logger
	grpc *grpc.Server

	mu sync.Mutex
	ln net.Listener
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

// NewServer builds a server that requires a node certificate of the cluster
// and serves the Node service (Ping).
func NewServer(cfg ServerConfig) (*Server, error) {
	if cfg.Material == nil {
		return nil, errors.New("rpc: server: no TLS material")
	}
	def := DefaultServerConfig()
	if cfg.MaxMsgSize <= 0 {
		cfg.MaxMsgSize = def.MaxMsgSize
	}
	if cfg.KeepaliveMinTime <= 0 {
		cfg.KeepaliveMinTime = def.KeepaliveMinTime
	}
	if cfg.RefusalLogWindow <= 0 {
		cfg.RefusalLogWindow = def.RefusalLogWindow
	}
	s := &Server{cfg: cfg, log: logger(cfg.Logger)}
	limit := newLogLimiter(cfg.RefusalLogWindow)
	onRefuse := func(err error) {
		if limit.allow(err) {
			s.log.Warn("rpc: refused a peer", "reason", certs.ReasonOf(err), "err", err)
		}
		if cfg.OnRefuse != nil {
			cfg.OnRefuse(err)
		}
	}
	// allowOperator false: operators use the admin API, never node RPC.
	tlsConf := cfg.Material.ServerConfig(false, onRefuse)
	s.grpc = grpc.NewServer(
		grpc.Creds(credentials.NewTLS(tlsConf)),
		grpc.MaxRecvMsgSize(cfg.MaxMsgSize),
		grpc.MaxSendMsgSize(cfg.MaxMsgSize),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             cfg.KeepaliveMinTime,
			PermitWithoutStream: true,
		}),
		// A handshake that stalls must not hold a goroutine for long.
		grpc.ConnectionTimeout(10*time.Second),
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		// Handlers run on long-lived goroutines, whose stacks are grown
		// already, rather than one new goroutine per RPC; when every
		// worker is busy gRPC starts one as before.
		grpc.NumStreamWorkers(uint32(runtime.GOMAXPROCS(0))),
	)
	meshpb.RegisterNodeServer(s.grpc, nodeService{name: cfg.Material.Self.Name})
	return s, nil
}

// RegisterService registers a gRPC service; see grpc.ServiceRegistrar.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	s.grpc.RegisterService(desc, impl)
}

// Listen listens on addr ("host:port", port 0 for any) and serves in the
// background. It returns the bound address, the value to advertise under
// overlay.ServiceRPC.
func (s *Server) Listen(addr string) (net.Addr, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("rpc: listen on %s: %w", addr, err)
	}
	go func() {
		if err := s.Serve(ln); err != nil {
			s.log.Error("rpc: server stopped", "addr", ln.Addr().String(), "err", err)
		}
	}()
	return ln.Addr(), nil
}

// Serve serves on ln until Stop; it returns nil after Stop.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	s.ln = ln
	s.mu.Unlock()
	if err := s.grpc.Serve(ln); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("rpc: serve %s: %w", ln.Addr(), err)
	}
	return nil
}

// Addr is the address being served, nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return nil
	}
	return s.ln.Addr()
}

// Stop closes the listener and every connection at once, failing calls in
// flight.
func (s *Server) Stop() { s.grpc.Stop() }

// GracefulStop stops accepting and waits for calls in flight until ctx is
// done, then stops.
func (s *Server) GracefulStop(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
		<-done
	}
}

// PeerName returns the node name of the verified peer of a call.
func PeerName(ctx context.Context) (string, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", false
	}
	id, err := certs.PeerIdentity(info.State)
	if err != nil {
		return "", false
	}
	return id.Name, true
}

type nodeService struct {
	meshpb.UnimplementedNodeServer
	name string
}

func (n nodeService) Ping(_ context.Context, req *meshpb.PingRequest) (*meshpb.PingResponse, error) {
	return &meshpb.PingResponse{Name: n.name, Payload: req.GetPayload()}, nil
}

// logLimiter lets one refusal per peer and reason through per window.
type logLimiter struct {
	window time.Duration
	mu     sync.Mutex
	last   map[string]time.Time
}

func newLogLimiter(window time.Duration) *logLimiter {
	return &logLimiter{window: window, last: map[string]time.Time{}}
}

func (l *logLimiter) allow(err error) bool {
	key := string(certs.ReasonOf(err))
	var re *certs.RefusalError
	if errors.As(err, &re) {
		key += "|" + re.Peer
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if t, ok := l.last[key]; ok && now.Sub(t) < l.window {
		return false
	}
	if len(l.last) > 1024 {
		// Bound memory against a peer cycling identities.
		clear(l.last)
	}
	l.last[key] = now
	return true
}

func logger(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
