package dnsprov

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/sipmesh/sipmesh/overlay"
)

// Server is the embedded authoritative server of the cluster domain. It
// answers from the local view of the membership and rebuilds its zone on
// every membership notification.
type Server struct {
	cfg Config
	src Membership
	log *slog.Logger

	idx atomic.Pointer[index]

	mu      sync.Mutex
	udp     *dns.Server
	tcp     *dns.Server
	addr    net.Addr
	done    chan struct{}
	stopped sync.WaitGroup
}

// NewServer returns a server for cfg.Cluster on cfg.Listen; Start binds it.
func NewServer(cfg Config, src Membership, log *slog.Logger) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		return nil, fmt.Errorf("dnsprov: no listen address for the embedded DNS server: set dns.listen")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, src: src, log: log.With("component", "dnsprov", "listen", cfg.Listen)}
	s.idx.Store(newIndex(Zone{Origin: cfg.Cluster + "."}))
	return s, nil
}

// Start builds the first zone, binds UDP and TCP on the same port and
// serves until Close.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("dnsprov: server already started")
	}
	ch, unsubscribe := s.src.Subscribe()
	s.rebuild()

	pc, l, err := listenBoth(s.cfg.Listen)
	if err != nil {
		unsubscribe()
		return err
	}
	s.addr = pc.LocalAddr()
	h := dns.HandlerFunc(s.serveDNS)
	s.udp = &dns.Server{PacketConn: pc, Handler: h}
	s.tcp = &dns.Server{Listener: l, Handler: h, ReadTimeout: 5 * time.Second, IdleTimeout: func() time.Duration { return 10 * time.Second }}
	s.done = make(chan struct{})
	for _, srv := range []*dns.Server{s.udp, s.tcp} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		s.stopped.Add(1)
		go func() {
			defer s.stopped.Done()
			if err := srv.ActivateAndServe(); err != nil {
				s.log.Error("dnsprov: DNS server stopped", "err", err)
			}
		}()
		<-started
	}
	s.stopped.Add(1)
	go func() {
		defer s.stopped.Done()
		defer unsubscribe()
		for {
			select {
			case <-s.done:
				return
			case _, ok := <-ch:
				if !ok {
					return
				}
				s.rebuild()
			}
		}
	}()
	s.log.Info("dnsprov: serving cluster zone", "zone", s.cfg.Cluster+".", "addr", s.addr.String())
	return nil
}

// listenBoth binds UDP and TCP on the same address; with port 0 it retries
// a few times until the UDP port is also free for TCP.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, fmt.Errorf("dnsprov: dns.listen %q: %w", addr, err)
	}
	var lastErr error
	for range 20 {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsprov: listen on udp %s: %w", addr, err)
		}
		p := pc.LocalAddr().(*net.UDPAddr).Port
		l, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(p)))
		if err == nil {
			return pc, l, nil
		}
		pc.Close()
		lastErr = err
		if port != "0" {
			break
		}
	}
	return nil, nil, fmt.Errorf("dnsprov: listen on tcp %s: %w", addr, lastErr)
}

// Addr is the bound address (UDP; TCP has the same port). Nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Close stops serving and following the membership.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.done == nil {
		s.mu.Unlock()
		return nil
	}
	select {
	case <-s.done:
		s.mu.Unlock()
		return nil
	default:
	}
	close(s.done)
	udp, tcp := s.udp, s.tcp
	s.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := errors.Join(udp.ShutdownContext(ctx), tcp.ShutdownContext(ctx))
	s.stopped.Wait()
	if err != nil {
		return fmt.Errorf("dnsprov: stop DNS server: %w", err)
	}
	return nil
}

// Zone is the zone being served now.
func (s *Server) Zone() Zone { return s.idx.Load().zone }

// rebuild recomputes the zone from the membership and swaps it in when the
// content changed.
func (s *Server) rebuild() {
	self := s.src.Self()
	members := withSelf(s.src.Members(), self)
	recs, err := Build(s.cfg, members, Perspective{Self: self.Name, Datacenter: self.Datacenter})
	if err != nil {
		s.log.Error("dnsprov: cannot build zone", "err", err)
		return
	}
	old := s.idx.Load()
	z := old.zone.Next(s.cfg.Cluster+".", recs, s.cfg.Now())
	if old.zone.built != nil && z.Serial == old.zone.Serial {
		return
	}
	s.idx.Store(newIndex(z))
	s.log.Debug("dnsprov: zone rebuilt", "serial", z.Serial, "records", len(z.Records))
}

// withSelf returns members with self in it (a local view always has us).
func withSelf(members []overlay.Member, self overlay.Member) []overlay.Member {
	for _, m := range members {
		if m.Name == self.Name {
			return members
		}
	}
	if self.Name == "" {
		return members
	}
	return append(append([]overlay.Member(nil), members...), self)
}

// index is an immutable, query-ready form of a zone.
type index struct {
	zone   Zone
	origin string
	rrs    map[string]map[uint16][]dns.RR
	exists map[string]bool // owner names and their ancestors (empty non-terminals, RFC 8020)
	negSOA dns.RR
}

func newIndex(z Zone) *index {
	idx := &index{zone: z, origin: z.Origin, rrs: map[string]map[uint16][]dns.RR{}, exists: map[string]bool{}}
	for _, r := range z.Records {
		rr, err := toRR(r)
		if err != nil {
			continue // Build only emits parsable records; a test proves it
		}
		name := strings.ToLower(rr.Header().Name)
		if idx.rrs[name] == nil {
			idx.rrs[name] = map[uint16][]dns.RR{}
		}
		t := rr.Header().Rrtype
		idx.rrs[name][t] = append(idx.rrs[name][t], rr)
		for n := name; dns.IsSubDomain(idx.origin, n); {
			idx.exists[n] = true
			off, end := dns.NextLabel(n, 0)
			if end {
				break
			}
			n = n[off:]
		}
		if soa, ok := rr.(*dns.SOA); ok {
			// RFC 2308 §3: the negative answer's SOA TTL is min(TTL, MINIMUM).
			neg := dns.Copy(soa).(*dns.SOA)
			neg.Hdr.Ttl = min(soa.Hdr.Ttl, soa.Minttl)
			idx.negSOA = neg
		}
	}
	return idx
}

func (s *Server) serveDNS(w dns.ResponseWriter, r *dns.Msg) {
	udp := false
	if _, ok := w.RemoteAddr().(*net.UDPAddr); ok {
		udp = true
	}
	m := s.idx.Load().answer(r, udp)
	if err := w.WriteMsg(m); err != nil {
		s.log.Debug("dnsprov: write answer", "err", err, "client", w.RemoteAddr().String())
	}
}

// answer computes the response to r.
func (idx *index) answer(r *dns.Msg, udp bool) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(r)
	m.RecursionAvailable = false // RFC 1035 §4.1.1: we never recurse

	size := dns.MinMsgSize
	if opt := r.IsEdns0(); opt != nil {
		// RFC 6891 §6.1.3: answer with our own OPT, last in the additional
		// section; BADVERS for versions we lack.
		size = max(int(opt.UDPSize()), dns.MinMsgSize)
		defer func() {
			m.SetEdns0(1232, false)
			if udp {
				m.Truncate(size) // drops additional first; TC only when the answer does not fit
			}
		}()
		if opt.Version() != 0 {
			m.Rcode = dns.RcodeBadVers
			return m
		}
	} else if udp {
		defer m.Truncate(size)
	}
	if r.Opcode != dns.OpcodeQuery {
		m.Rcode = dns.RcodeNotImplemented
		return m
	}
	if len(r.Question) != 1 {
		m.Rcode = dns.RcodeFormatError
		return m
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	if (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) || !dns.IsSubDomain(idx.origin, name) {
		// Not ours, and we are no resolver: REFUSED (RFC 8906 §3.1.4).
		m.Rcode = dns.RcodeRefused
		return m
	}
	switch q.Qtype {
	case dns.TypeAXFR, dns.TypeIXFR:
		m.Rcode = dns.RcodeRefused // see package doc: serials are per node
		return m
	}
	m.Authoritative = true

	types := idx.rrs[name]
	if q.Qtype == dns.TypeANY {
		for _, t := range []uint16{dns.TypeSOA, dns.TypeNS, dns.TypeNAPTR, dns.TypeSRV, dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
			m.Answer = append(m.Answer, types[t]...)
		}
	} else {
		m.Answer = append(m.Answer, types[q.Qtype]...)
	}
	switch {
	case len(m.Answer) > 0:
		idx.additional(m)
	case idx.exists[name]:
		m.Ns = idx.neg() // NODATA, RFC 2308 §2.2
	default:
		m.Rcode = dns.RcodeNameError // RFC 2308 §2.1
		m.Ns = idx.neg()
	}
	return m
}

func (idx *index) neg() []dns.RR {
	if idx.negSOA == nil {
		return nil
	}
	return []dns.RR{idx.negSOA}
}

// additional adds what the client will ask next: for NAPTR the SRV sets of
// the replacements (RFC 3403 §4.2 / RFC 2915 additional processing), for
// SRV and NS the addresses of their targets (RFC 2782, RFC 1035 §3.3.11).
func (idx *index) additional(m *dns.Msg) {
	seen := map[string]bool{}
	var addrs func(target string)
	addrs = func(target string) {
		target = strings.ToLower(target)
		if seen[target] {
			return
		}
		seen[target] = true
		m.Extra = append(m.Extra, idx.rrs[target][dns.TypeA]...)
		m.Extra = append(m.Extra, idx.rrs[target][dns.TypeAAAA]...)
	}
	srvs := func(name string) {
		name = strings.ToLower(name)
		if seen["srv "+name] {
			return
		}
		seen["srv "+name] = true
		for _, rr := range idx.rrs[name][dns.TypeSRV] {
			m.Extra = append(m.Extra, rr)
		}
		for _, rr := range idx.rrs[name][dns.TypeSRV] {
			addrs(rr.(*dns.SRV).Target)
		}
	}
	for _, rr := range m.Answer {
		switch v := rr.(type) {
		case *dns.NAPTR:
			srvs(v.Replacement)
		case *dns.SRV:
			addrs(v.Target)
		case *dns.NS:
			addrs(v.Ns)
		}
	}
}
