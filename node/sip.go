package node

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/dnsprov"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/store"
	"github.com/sipmesh/sipmesh/roles/digest"
	"github.com/sipmesh/sipmesh/roles/presence"
	"github.com/sipmesh/sipmesh/roles/presence/ringstore"
	"github.com/sipmesh/sipmesh/roles/proxy"
	"github.com/sipmesh/sipmesh/roles/registrar"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// registrarMerger is the merge rule of the registrar store: RFC 3261 §10.3
// ordering of one binding's versions (registrar.Newer). startState sets it
// as the registrar store's Merger.
var registrarMerger store.Merger = store.MergerFunc(func(a, b store.Record) bool {
	return registrar.Newer(toRegistrarRecord(a), toRegistrarRecord(b))
})

func toRegistrarRecord(r store.Record) registrar.Record {
	return registrar.Record{ID: r.ID, Value: r.Value, Expires: r.Expires, Deleted: r.Deleted, Version: r.Version}
}

// sipServices are the SIP addresses this node advertises, from sip.listen.
func (n *Node) sipServices() map[string]string {
	out := map[string]string{}
	if !n.runsSIP() {
		return out
	}
	names := map[string]string{"udp": overlay.ServiceSIPUDP, "tcp": overlay.ServiceSIPTCP, "tls": overlay.ServiceSIPTLS,
		"ws": overlay.ServiceSIPWS, "wss": overlay.ServiceSIPWSS}
	for _, l := range n.cfg.SIP.Listen {
		sl, err := ParseSIPListen(l)
		if err != nil {
			continue
		}
		if _, ok := out[names[sl.Transport]]; !ok {
			out[names[sl.Transport]] = sl.Addr
		}
	}
	return out
}

func (n *Node) runsSIP() bool {
	return len(n.cfg.SIP.Listen) > 0 && (slices.Contains(n.roles, certs.RoleProxy) || slices.Contains(n.roles, certs.RoleRegistrar) ||
		slices.Contains(n.roles, certs.RolePresence))
}

// startSIP builds the SIP edge (roles/proxy) and, when this node has the
// registrar role, the registrar, from the configuration, the overlay and
// the registrar store, and starts serving. It must run after startState.
// stop closes the listeners.
func (n *Node) startSIP(ctx context.Context) (stop func(), err error) {
	if !n.runsSIP() {
		return func() {}, nil
	}
	st, ok := n.stores.Store(certs.RoleRegistrar)
	if !ok {
		return nil, errors.New("node: SIP: no registrar store")
	}
	log := n.log.With("component", "sip")
	ctx, cancel := context.WithCancel(ctx)
	defer func() {
		if err != nil {
			cancel()
		}
	}()

	secret, err := n.clusterSecret()
	if err != nil {
		return nil, err
	}
	var users digest.Users
	var known proxy.Users
	var auth *digest.Authenticator
	if n.cfg.SIP.Users != "" {
		fu, err := digest.LoadUsers(n.cfg.Path(n.cfg.SIP.Users), digest.WithFileLogger(log))
		if err != nil {
			return nil, fmt.Errorf("node: key \"sip.users\": %w", err)
		}
		go fu.Watch(ctx, 2*time.Second)
		users, known = fu, knownUsers{fu}
		// MD5 first: SIPp and many phones answer the first challenge
		// they are given and compute MD5 only (RFC 8760 §2.4 asks for
		// preference order; clients that do SHA-256 still pick it).
		// Nonces are bound to this node (digest.Config.Issuer): counts are
		// tracked here, in memory, and a replay to another node gets a
		// stale=true challenge there, with no round trip per request.
		algs := n.cfg.SIP.DigestAlgorithms // canonical: the config checked them
		if len(algs) == 0 {
			algs = []digest.Algorithm{digest.MD5, digest.SHA256}
		}
		auth, err = digest.New(digest.Config{Secret: secret, Algorithms: algs, Issuer: n.Name()},
			users, digest.WithLogger(log))
		if err != nil {
			return nil, fmt.Errorf("node: SIP: %w", err)
		}
	} else {
		log.Warn("no subscribers file (key \"sip.users\"): REGISTERs and calls are not authenticated")
	}

	ropts := []registrar.Option{registrar.WithNodeName(n.Name()), registrar.WithLogger(log), registrar.WithGRUU(secret)}
	if auth != nil {
		ropts = append(ropts, registrar.WithAuthenticator(auth))
	}
	reg, err := registrar.New(n.mat.Cluster, regStore{st}, ropts...)
	if err != nil {
		return nil, fmt.Errorf("node: SIP: %w", err)
	}
	var listen []proxy.Listen
	for _, l := range n.cfg.SIP.Listen {
		sl, err := ParseSIPListen(l)
		if err != nil {
			return nil, fmt.Errorf("node: key \"sip.listen\": %w", err)
		}
		listen = append(listen, proxy.Listen{Transport: sl.Transport, Addr: sl.Addr})
	}
	mesh := sipMesh{n: n}
	mesh.peers = mesh.watchPeers(ctx)
	pc := proxy.Config{
		Domain:  n.mat.Cluster,
		Listen:  listen,
		TLS:     &tls.Config{Certificates: []tls.Certificate{*n.mat.Certificate()}, MinVersion: tls.VersionTLS12},
		Locator: locator{reg},
		GRUUs:   locator{reg},
		Mesh:    mesh,
		Logger:  log,

		RateLimit:    n.cfg.SIP.RateLimit,
		RateBurst:    n.cfg.SIP.RateBurst,
		RelayDomains: n.cfg.SIP.RelayForeign,
		Resolver:     sipResolver{addr: n.cfg.Overlay.Resolver},
		FlowKey:      derive(secret, "sipmesh flow token v1", n.Name()),
		FlowTimer:    time.Duration(n.cfg.SIP.FlowTimer) * time.Second,

		TransactionWait: time.Duration(n.cfg.SIP.TransactionWait) * time.Second,
		QueueWait:       n.queueWait,
	}
	if known != nil {
		pc.Users = known
	}
	if auth != nil {
		pc.Auth = auth
	}
	if slices.Contains(n.roles, certs.RoleRegistrar) {
		pc.Registrar = reg
	}
	// The presence agent sends its NOTIFYs through the edge (from the
	// node's SIP address); the edge hands it PUBLISH and SUBSCRIBE.
	sender := &edgeSender{}
	var agent *presence.Agent
	if slices.Contains(n.roles, certs.RolePresence) {
		pst, ok := n.stores.Store(certs.RolePresence)
		if !ok {
			return nil, errors.New("node: SIP: no presence store")
		}
		if agent, err = presence.New(ringstore.New(pst, n.Name()), sender, presence.WithLogger(log)); err != nil {
			return nil, fmt.Errorf("node: SIP: %w", err)
		}
	}
	pc.Presence = presenceEdge{n: n, agent: agent}
	media, err := n.newMedia(log)
	if err != nil {
		return nil, err
	}
	if media != nil {
		pc.Media = media
	}
	p, err := proxy.New(pc)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	sender.p = p
	stopMedia := func() {}
	if media != nil {
		stopMedia = media.start(ctx, p.MediaEnded)
	}
	p.Serve(ctx)
	if agent != nil {
		agent.Start()
	}
	relayMode := string(relay.ModeNever)
	if media != nil {
		relayMode = string(media.mode)
	}
	log.Info("SIP edge started", "domain", n.mat.Cluster, "listen", fmt.Sprint(p.Addrs()), "registrar", pc.Registrar != nil, "presence", agent != nil,
		"relay_foreign", fmt.Sprint(pc.RelayDomains), "relay_mode", relayMode)
	return func() {
		if agent != nil {
			agent.Close()
		}
		stopMedia()
		cancel()
		p.Close()
	}, nil
}

// clusterSecret is the secret every node of the cluster derives alike, and
// the one way the SIP roles get a shared key: digest nonces are signed
// with it (roles/digest), temp-gruus sealed (roles/registrar), flow tokens
// signed (derive, below); each use derives its own key from it with its
// own label. It is derived from the cluster CA certificate (its label says
// "nonce": nonces were its first use, and changing it would invalidate
// every nonce in flight). Limitation: whoever holds ca.crt can mint nonces
// that pass the freshness check (the password is still needed), read the
// AOR out of a temp-gruu and forge flow tokens (which reach no more than an
// in-dialog request does); a secret distributed through the mesh would
// close that.
func (n *Node) clusterSecret() ([]byte, error) {
	ca, err := os.ReadFile(n.cfg.Path(n.cfg.TLS.CA))
	if err != nil {
		return nil, fmt.Errorf("node: SIP: reading the CA certificate for the cluster secret: %w", err)
	}
	m := hmac.New(sha256.New, []byte("sipmesh digest nonce secret v1"))
	m.Write(ca)
	m.Write([]byte(n.mat.Cluster))
	return m.Sum(nil), nil
}

// derive is the key for one use of the cluster secret: HMAC-SHA256 of the
// label and its context.
func derive(secret []byte, label, context string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(label))
	m.Write([]byte{0})
	m.Write([]byte(context))
	return m.Sum(nil)
}

// regStore adapts the registrar's store to the replicated store.
type regStore struct{ s *store.Store }

func (r regStore) Put(ctx context.Context, key string, recs ...registrar.Record) error {
	out := make([]store.Record, len(recs))
	for i, x := range recs {
		out[i] = store.Record{ID: x.ID, Value: x.Value, Expires: x.Expires, Deleted: x.Deleted}
	}
	return r.s.Put(ctx, key, out...)
}

// Get reads with Each: the store can then change the key's records in
// place on the REGISTER's write (store.Store.Each).
func (r regStore) Get(ctx context.Context, key string, dst []registrar.Record) ([]registrar.Record, error) {
	err := r.s.Each(ctx, key, func(x store.Record) { dst = append(dst, toRegistrarRecord(x)) })
	return dst, err
}

// locator adapts the registrar's lookup to the proxy.
type locator struct{ r *registrar.Registrar }

func (l locator) Locate(ctx context.Context, aor string) ([]proxy.Target, error) {
	bs, err := l.r.Lookup(ctx, aor)
	if err != nil {
		return nil, err
	}
	return targets(bs), nil
}

// LocateGRUU resolves a GRUU of the domain to its instance's contacts.
func (l locator) LocateGRUU(ctx context.Context, gruu sip.Uri) (string, []proxy.Target, error) {
	aor, bs, err := l.r.LookupGRUU(ctx, gruu)
	if err != nil {
		return "", nil, err
	}
	return aor, targets(bs), nil
}

func targets(bs []registrar.Binding) []proxy.Target {
	out := make([]proxy.Target, len(bs))
	for i, b := range bs {
		out[i] = proxy.Target{URI: b.Contact, Path: b.Path, Q: b.Q, Instance: b.Instance, RegID: b.RegID}
	}
	return out
}

// sipResolver locates foreign domains' SIP servers (RFC 3263) at the
// node's DNS server (overlay.resolver, else the system's).
type sipResolver struct{ addr string }

func (r sipResolver) ResolveSIP(ctx context.Context, domain string) ([]proxy.Hop, error) {
	ts, err := dnsprov.ResolveSIP(ctx, r.addr, domain)
	if errors.Is(err, dnsprov.ErrNoSIPServers) {
		return nil, fmt.Errorf("%w: %w", proxy.ErrNoSuchDomain, err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]proxy.Hop, len(ts))
	for i, t := range ts {
		out[i] = proxy.Hop{Transport: t.Transport, Addr: t.Addr}
	}
	return out, nil
}

type knownUsers struct{ u digest.Users }

func (k knownUsers) Known(ctx context.Context, user, domain string) (bool, error) {
	_, err := k.u.Lookup(ctx, user, domain)
	if errors.Is(err, digest.ErrUnknownUser) {
		return false, nil
	}
	return err == nil, err
}

// sipMesh answers the proxy's questions from the overlay.
type sipMesh struct {
	n     *Node
	peers *peerIPs // nil: asked of the overlay each time
}

var sipServiceNames = []string{overlay.ServiceSIPUDP, overlay.ServiceSIPTCP, overlay.ServiceSIPTLS, overlay.ServiceSIPWS, overlay.ServiceSIPWSS}

// IsPeer: a source IP that a live member advertises for SIP.
func (m sipMesh) IsPeer(ip string) bool {
	if m.peers != nil {
		return (*m.peers.ips.Load())[ip]
	}
	return m.peerSet()[ip]
}

// peerSet is the SIP IPs of the alive and suspect members.
func (m sipMesh) peerSet() map[string]bool {
	out := map[string]bool{}
	for _, mem := range m.n.ov.Members() {
		if mem.State != overlay.StateAlive && mem.State != overlay.StateSuspect {
			continue
		}
		for _, s := range sipServiceNames {
			if a, ok := mem.Services[s]; ok {
				if h, _, err := net.SplitHostPort(a); err == nil {
					out[h] = true
				}
			}
		}
	}
	return out
}

// peerIPs keeps sipMesh.peerSet up to date: every request asks IsPeer, and
// copying the member list for each was work in proportion to the mesh.
type peerIPs struct {
	ips atomic.Pointer[map[string]bool]
}

// watchPeers fills a peerIPs now and after each membership change until
// ctx is done.
func (m sipMesh) watchPeers(ctx context.Context) *peerIPs {
	p := &peerIPs{}
	set := m.peerSet()
	p.ips.Store(&set)
	changed, cancel := m.n.ov.Subscribe()
	go func() {
		defer cancel()
		for {
			select {
			case <-ctx.Done():
				return
			case _, ok := <-changed:
				if !ok {
					return
				}
				set := m.peerSet()
				p.ips.Store(&set)
			}
		}
	}()
	return p
}

func (m sipMesh) Alone() bool {
	st, ok := m.n.stores.Store(certs.RoleRegistrar)
	return ok && st.Alone()
}

func (m sipMesh) RegistrarAddr(aor string) (string, error) {
	owner, ok := m.n.ov.Ring(certs.RoleRegistrar).Owner(aor)
	if !ok {
		return "", errors.New("no node has the registrar role")
	}
	mem, ok := m.n.ov.Member(owner.Name)
	if !ok {
		return "", fmt.Errorf("registrar %s is not a member", owner.Name)
	}
	a, ok := mem.Services[overlay.ServiceSIPUDP]
	if !ok {
		return "", fmt.Errorf("registrar %s advertises no SIP UDP address", owner.Name)
	}
	return a, nil
}

// PresenceAddr is the UDP "host:port" of the node owning key
// ("user@domain") on the presence ring.
func (m sipMesh) PresenceAddr(key string) (string, error) {
	addr, _, err := m.presenceOwner(key)
	return addr, err
}

func (m sipMesh) presenceOwner(key string) (addr, name string, err error) {
	owner, ok := m.n.ov.Ring(certs.RolePresence).Owner(key)
	if !ok {
		return "", "", errors.New("no node has the presence role")
	}
	mem, ok := m.n.ov.Member(owner.Name)
	if !ok {
		return "", "", fmt.Errorf("presence agent %s is not a member", owner.Name)
	}
	a, ok := mem.Services[overlay.ServiceSIPUDP]
	if !ok {
		return "", "", fmt.Errorf("presence agent %s advertises no SIP UDP address", owner.Name)
	}
	return a, owner.Name, nil
}

// presenceEdge adapts the presence agent (nil on nodes without the
// presence role) and the presence ring to the edge.
type presenceEdge struct {
	n     *Node
	agent *presence.Agent
}

func (e presenceEdge) Handles(req *sip.Request) bool { return presence.Handles(req) }

func (e presenceEdge) Owner(req *sip.Request) (string, bool, error) {
	addr, name, err := sipMesh{n: e.n}.presenceOwner(presence.Key(req.Recipient))
	if err != nil {
		return "", false, err
	}
	return addr, e.agent != nil && name == e.n.Name(), nil
}

func (e presenceEdge) ServeSIP(ctx context.Context, req *sip.Request, tx proxy.Responder) error {
	if e.agent == nil {
		return errors.New("node: no presence agent on this node")
	}
	return e.agent.ServeSIP(ctx, req, tx)
}

// edgeSender sends the presence agent's NOTIFYs through the edge.
type edgeSender struct{ p *proxy.Proxy }

func (s *edgeSender) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	if s.p == nil {
		return nil, errors.New("node: SIP edge not started")
	}
	return s.p.Send(ctx, req)
}
