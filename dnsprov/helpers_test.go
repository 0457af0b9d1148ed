package dnsprov

import (
	"bytes"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/internal/bindtest"
	"github.com/sipmesh/sipmesh/overlay"
)

const testCluster = "example.test"

// fakeMesh is a membership every fake node sees the same way.
type fakeMesh struct {
	mu      sync.Mutex
	members []overlay.Member
	subs    map[int]chan struct{}
	next    int
}

func newMesh(members ...overlay.Member) *fakeMesh {
	return &fakeMesh{members: members, subs: map[int]chan struct{}{}}
}

// view is the Membership of one node of the mesh.
func (f *fakeMesh) view(self string) Membership { return &fakeView{f, self} }

func (f *fakeMesh) setState(name string, st overlay.State) {
	f.update(func(ms []overlay.Member) []overlay.Member {
		for i := range ms {
			if ms[i].Name == name {
				ms[i].State = st
			}
		}
		return ms
	})
}

func (f *fakeMesh) update(fn func([]overlay.Member) []overlay.Member) {
	f.mu.Lock()
	f.members = fn(f.members)
	subs := make([]chan struct{}, 0, len(f.subs))
	for _, c := range f.subs {
		subs = append(subs, c)
	}
	f.mu.Unlock()
	for _, c := range subs {
		select { // coalesced, as overlay.Subscribe promises
		case c <- struct{}{}:
		default:
		}
	}
}

type fakeView struct {
	f    *fakeMesh
	self string
}

func (v *fakeView) Members() []overlay.Member {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	out := make([]overlay.Member, len(v.f.members))
	for i, m := range v.f.members {
		m.Roles = slices.Clone(m.Roles)
		svc := map[string]string{}
		for k, s := range m.Services {
			svc[k] = s
		}
		m.Services = svc
		out[i] = m
	}
	return out
}

func (v *fakeView) Self() overlay.Member {
	for _, m := range v.Members() {
		if m.Name == v.self {
			return m
		}
	}
	return overlay.Member{Name: v.self, State: overlay.StateAlive}
}

func (v *fakeView) Subscribe() (<-chan struct{}, func()) {
	v.f.mu.Lock()
	defer v.f.mu.Unlock()
	c := make(chan struct{}, 1)
	id := v.f.next
	v.f.next++
	v.f.subs[id] = c
	return c, func() {
		v.f.mu.Lock()
		defer v.f.mu.Unlock()
		delete(v.f.subs, id)
	}
}

// member is an alive node with every role, SIP on UDP/TCP 5060 and TLS 5061.
func member(name, dc, ip string) overlay.Member {
	return overlay.Member{
		Name: name, Datacenter: dc, State: overlay.StateAlive,
		Roles:   []string{"proxy", "registrar"},
		Address: net.JoinHostPort(ip, "7946"),
		Services: map[string]string{
			overlay.ServiceSIPUDP: net.JoinHostPort(ip, "5060"),
			overlay.ServiceSIPTCP: net.JoinHostPort(ip, "5060"),
			overlay.ServiceSIPTLS: net.JoinHostPort(ip, "5061"),
		},
	}
}

func testConfig() Config {
	c := DefaultConfig()
	c.Cluster = testCluster
	return c
}

// digResult and dig are dig's parsed answer and one of its RR lines; the
// runner lives in internal/bindtest, shared with the end-to-end tests.
type (
	digResult = bindtest.Result
	dig       = bindtest.RR
)

// runDig asks server (ip:port) with the real dig.
func runDig(t testing.TB, server string, args ...string) digResult {
	t.Helper()
	return bindtest.Dig(t, server, args...)
}

// startServer runs an embedded server on 127.0.0.1:0 for view.
func startServer(t testing.TB, cfg Config, view Membership) *Server {
	t.Helper()
	cfg.Listen = "127.0.0.1:0"
	s, err := NewServer(cfg, view, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func testLogger(w *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// startNamed starts a real BIND 9 primary for testCluster whose key may
// update it, with extra zone-file lines.
func startNamed(t testing.TB, extra ...string) *bindtest.Named {
	t.Helper()
	return bindtest.Start(t, bindtest.Options{Zone: testCluster, Records: extra})
}

// updaterConfig is the configuration of a node updating ns.
func updaterConfig(ns *bindtest.Named) Config {
	c := testConfig()
	c.RFC2136.Server = ns.Addr
	c.RFC2136.KeyName = ns.KeyName
	c.RFC2136.Secret = ns.Secret
	c.RFC2136.RetryMin = 50 * time.Millisecond
	c.RFC2136.RetryMax = 500 * time.Millisecond
	return c
}
