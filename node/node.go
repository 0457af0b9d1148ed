package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/dnsprov"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/store"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// Bounds of a graceful shutdown: hand records off, then leave.
const (
	dnsLeaveTimeout = 5 * time.Second
	handoffTimeout  = 20 * time.Second
	leaveTimeout    = 5 * time.Second
)

// Node is a running sipmesh node.
type Node struct {
	cfg   *Config
	log   *slog.Logger
	mat   *certs.Material
	roles []string
	reg   *prometheus.Registry

	ov         *overlay.Overlay
	rpcLn      net.Listener
	rpcServer  *rpc.Server
	rpcClient  *rpc.Client
	stores     *store.Registry
	relay      *relay.Relay
	dnsServer  *dnsprov.Server
	dnsUpdater *dnsprov.Updater
	adminLn    net.Listener
	admin      *http.Server
	metrics    *http.Server
	metricLn   net.Listener

	stopSIP   func()
	stopOnce  sync.Once
	queueWait func(time.Duration) // WithQueueWait
	stopCRL   chan struct{}
}

// Option adjusts a Node that New makes, for what its configuration file
// does not hold.
type Option func(*Node)

// WithQueueWait has the SIP edge tell f how long each request that opens a
// transaction waited in its UDP socket (proxy.Config.QueueWait): `sipmesh
// run` gives its GOMAXPROCS governor's Behind, which belongs to the process,
// not to a node (tests run several in one).
func WithQueueWait(f func(time.Duration)) Option {
	return func(n *Node) { n.queueWait = f }
}

// New loads the node's certificate material and binds its listeners. Errors
// name what is wrong and what to do.
func New(cfg *Config, log *slog.Logger, opts ...Option) (*Node, error) {
	mat, err := certs.Load(cfg.Path(cfg.TLS.CA), cfg.Path(cfg.TLS.Cert), cfg.Path(cfg.TLS.Key), cfg.Path(cfg.TLS.CRL))
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if mat.Self.Kind != certs.KindNode {
		return nil, fmt.Errorf("node: %s is an %s certificate; a node needs a node certificate ('sipmesh cert issue' without --operator)", cfg.Path(cfg.TLS.Cert), mat.Self.Kind)
	}
	roles, err := effectiveRoles(mat.Self, cfg.Node.Roles, cfg.Path(cfg.TLS.Cert))
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: log.With("node", mat.Self.Name), mat: mat, roles: roles, reg: prometheus.NewRegistry(), stopCRL: make(chan struct{})}
	for _, o := range opts {
		o(n)
	}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := n.listen(); err != nil {
		n.closeListeners()
		return nil, err
	}
	return n, nil
}

// effectiveRoles narrows the certificate's roles by node.roles.
func effectiveRoles(id certs.Identity, want []string, certPath string) ([]string, error) {
	if len(want) == 0 {
		return slices.Clone(id.Roles), nil
	}
	for _, r := range want {
		if !id.HasRole(r) {
			return nil, fmt.Errorf("node: key \"node.roles\" asks for role %q, which certificate %s does not allow (it allows: %s); remove it or issue a certificate with --roles", r, certPath, strings.Join(id.Roles, ","))
		}
	}
	return slices.Clone(want), nil
}

func (n *Node) listen() error {
	ln, err := net.Listen("tcp", n.cfg.RPC.Listen)
	if err != nil {
		return fmt.Errorf("node: RPC listener (key \"rpc.listen\"): %w", err)
	}
	n.rpcLn = ln
	ln, err = net.Listen("tcp", n.cfg.Admin.Listen)
	if err != nil {
		return fmt.Errorf("node: admin listener (key \"admin.listen\"): %w", err)
	}
	n.adminLn = ln
	if n.cfg.Metrics.Listen != "" {
		ln, err := net.Listen("tcp", n.cfg.Metrics.Listen)
		if err != nil {
			return fmt.Errorf("node: metrics listener (key \"metrics.listen\"): %w", err)
		}
		n.metricLn = ln
	}
	return nil
}

func (n *Node) closeListeners() {
	for _, ln := range []net.Listener{n.rpcLn, n.adminLn, n.metricLn} {
		if ln != nil {
			ln.Close()
		}
	}
}

// Name is the node's name from its certificate.
func (n *Node) Name() string { return n.mat.Self.Name }

// AdminAddr is the bound admin address.
func (n *Node) AdminAddr() string { return n.adminLn.Addr().String() }

// services lists what this node advertises to the mesh.
func (n *Node) services() map[string]string {
	s := map[string]string{
		overlay.ServiceAdmin: n.AdminAddr(),
		overlay.ServiceRPC:   n.rpcLn.Addr().String(),
	}
	if n.cfg.DNS.Listen != "" {
		s[overlay.ServiceDNS] = n.cfg.DNS.Listen
	}
	maps.Copy(s, n.sipServices())
	return s
}

// Run starts the overlay and the admin API, joins the mesh and serves until
// ctx is done; then it leaves the mesh gracefully.
func (n *Node) Run(ctx context.Context) error {
	if err := n.start(); err != nil {
		return err
	}
	n.serveAdmin()
	n.log.Info("node started", "cluster", n.mat.Cluster, "datacenter", n.mat.Self.Datacenter, "roles", strings.Join(n.roles, ","),
		"gossip", n.ov.GossipAddr(), "admin", n.AdminAddr())

	joinCtx, stopJoin := context.WithCancel(ctx)
	defer stopJoin()
	go n.joinLoop(joinCtx)

	<-ctx.Done()
	return n.shutdown()
}

// start brings up the overlay, state, DNS and SIP in order; when one
// fails, what was started is stopped again, in reverse.
func (n *Node) start() (err error) {
	undo := []func(){n.closeListeners}
	defer func() {
		if err != nil {
			for i := len(undo) - 1; i >= 0; i-- {
				undo[i]()
			}
		}
	}()
	ov, err := overlay.New(overlay.Config{
		Material:   n.mat,
		BindAddr:   n.cfg.Node.Address,
		Port:       n.cfg.Overlay.Port,
		Timing:     n.cfg.Overlay.Timing,
		Roles:      n.roles,
		Services:   n.services(),
		Logger:     n.log,
		Registerer: n.reg,
		CRLPath:    n.cfg.Path(n.cfg.TLS.CRL),
	})
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.ov = ov
	undo = append(undo, func() { ov.Shutdown() })
	if err = n.startState(); err != nil {
		return err
	}
	undo = append(undo, n.stopState)
	if err = n.startDNS(); err != nil {
		return err
	}
	undo = append(undo, func() { n.leaveDNS(context.Background()) })
	// SIP outlives the Run context: it stops after the handoff, so calls in
	// progress are served while records move.
	n.stopSIP, err = n.startSIP(context.Background())
	return err
}

// joinLoop joins the configured seeds, or those DNS publishes under
// _sipmesh._tcp.<cluster>, retrying with backoff until one answers or
// another node has joined this one: nodes of a new cluster may start in any
// order.
func (n *Node) joinLoop(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for attempt := 1; ; attempt++ {
		seeds, err := n.seeds(ctx)
		switch {
		case err != nil:
			n.log.Warn("cannot discover seeds through DNS; retrying (set overlay.join, or overlay.resolver to the cluster's DNS server)",
				"query", "_sipmesh._tcp."+n.mat.Cluster, "attempt", attempt, "err", err)
		case len(seeds) == 0 && attempt == 1:
			n.log.Info("no other node found: this node starts a new mesh and keeps looking for seeds")
		case len(seeds) > 0:
			joined, err := n.ov.Join(seeds)
			if joined > 0 {
				n.log.Info("joined the mesh", "seeds", strings.Join(seeds, ","), "contacted", joined)
				return
			}
			n.log.Warn("cannot join the mesh yet; retrying", "seeds", strings.Join(seeds, ","), "attempt", attempt, "err", err)
		}
		if n.aliveMembers() > 1 {
			return // another node joined us
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (n *Node) aliveMembers() int {
	alive := 0
	for _, m := range n.ov.Members() {
		if m.State == overlay.StateAlive {
			alive++
		}
	}
	return alive
}

// seeds are the configured join addresses, or the discovered ones, other
// than this node's own.
func (n *Node) seeds(ctx context.Context) ([]string, error) {
	candidates := n.cfg.Overlay.Join
	if len(candidates) == 0 {
		var err error
		if candidates, err = n.discoverSeeds(ctx); err != nil {
			return nil, err
		}
	}
	self := n.ov.GossipAddr()
	var out []string
	for _, j := range candidates {
		hp, _ := n.cfg.hostPort(j, DefaultGossipPort)
		if hp != self {
			out = append(out, hp)
		}
	}
	return out, nil
}

func (n *Node) shutdown() error {
	var errs []error
	n.stopOnce.Do(func() {
		n.log.Info("leaving the mesh")
		// DNS first, so phones stop being sent here while records move.
		dctx, dcancel := context.WithTimeout(context.Background(), dnsLeaveTimeout)
		n.leaveDNS(dctx)
		dcancel()
		hctx, hcancel := context.WithTimeout(context.Background(), handoffTimeout)
		n.handoffState(hctx)
		hcancel()
		n.stopSIP()
		if err := n.ov.Leave(leaveTimeout); err != nil {
			errs = append(errs, fmt.Errorf("node: leave: %w", err))
		}
		n.stopState()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		for _, s := range []*http.Server{n.admin, n.metrics} {
			if s != nil {
				if err := s.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
					errs = append(errs, err)
				}
			}
		}
		n.log.Info("stopped")
	})
	return errors.Join(errs...)
}
