// Package rpctest provides helpers for tests of packages that talk over
// overlay/rpc: a throw-away cluster CA and node identities, an in-memory
// membership whose views implement the interfaces of overlay/rpc and
// overlay/store, and a deadline-bounded Eventually.
//
// It is for tests only and must not be imported by production code.
package rpctest

import (
	"bytes"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/ring"
)

// Cluster is the domain of test CAs.
const Cluster = "example.test"

// CA is a throw-away cluster CA.
type CA struct {
	t  testing.TB
	ca *certs.CA
}

// NewCA creates a CA in a temporary directory.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := certs.InitCA(filepath.Join(t.TempDir(), "ca"), Cluster, certs.KeyECDSA)
	if err != nil {
		t.Fatalf("rpctest: init CA: %v", err)
	}
	return &CA{t: t, ca: ca}
}

// Material issues a certificate for req and loads it as a node would.
func (c *CA) Material(req certs.IssueRequest) *certs.Material {
	c.t.Helper()
	is, err := c.ca.Issue(req)
	if err != nil {
		c.t.Fatalf("rpctest: issue %s: %v", req.Name, err)
	}
	dir := c.t.TempDir()
	certPath, keyPath, err := is.WriteFiles(dir, req.Name)
	if err != nil {
		c.t.Fatalf("rpctest: write %s: %v", req.Name, err)
	}
	m, err := certs.Load(filepath.Join(c.ca.Dir, certs.CACertFile), certPath, keyPath, "")
	if err != nil {
		c.t.Fatalf("rpctest: load %s: %v", req.Name, err)
	}
	return m
}

// Node issues a node certificate for name in datacenter dc ("" = dc1).
func (c *CA) Node(name, dc string) *certs.Material {
	c.t.Helper()
	return c.Material(certs.IssueRequest{Name: name, Datacenter: dc})
}

// Membership is an in-memory, instantly consistent membership shared by
// every node of a test cluster. View gives one node's view of it.
type Membership struct {
	mu         sync.Mutex
	members    map[string]overlay.Member
	subs       map[int]chan struct{}
	nextSub    int
	partitions int
	rings      map[string]*ring.Ring
}

// NewMembership returns an empty membership with rings of partitions
// partitions (0 = ring.DefaultPartitions).
func NewMembership(partitions int) *Membership {
	return &Membership{members: map[string]overlay.Member{}, subs: map[int]chan struct{}{}, partitions: partitions, rings: map[string]*ring.Ring{}}
}

// Set adds or replaces a member and notifies subscribers.
func (m *Membership) Set(mem overlay.Member) {
	m.mu.Lock()
	if mem.State == "" {
		mem.State = overlay.StateAlive
	}
	m.members[mem.Name] = mem
	m.changed()
	m.mu.Unlock()
}

// SetState changes a member's state and notifies subscribers.
func (m *Membership) SetState(name string, st overlay.State) {
	m.mu.Lock()
	if mem, ok := m.members[name]; ok {
		mem.State = st
		m.members[name] = mem
		m.changed()
	}
	m.mu.Unlock()
}

// Remove forgets a member and notifies subscribers.
func (m *Membership) Remove(name string) {
	m.mu.Lock()
	delete(m.members, name)
	m.changed()
	m.mu.Unlock()
}

func (m *Membership) changed() {
	m.rings = map[string]*ring.Ring{}
	for _, ch := range m.subs {
		select {
		case ch <- struct{}{}:
		default: // coalesced: a notification is already pending
		}
	}
}

// Member returns a member by name.
func (m *Membership) Member(name string) (overlay.Member, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	mem, ok := m.members[name]
	return mem, ok
}

// Ring returns the ring of alive members with role.
func (m *Membership) Ring(role string) *ring.Ring {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r, ok := m.rings[role]; ok {
		return r
	}
	var nodes []ring.Node
	for _, mem := range m.members {
		if mem.State == overlay.StateAlive && mem.HasRole(role) {
			nodes = append(nodes, ring.Node{Name: mem.Name, Datacenter: mem.Datacenter})
		}
	}
	r := ring.New(nodes, m.partitions)
	m.rings[role] = r
	return r
}

// Subscribe returns a channel that receives a (coalesced) notification
// after every change, and a function that ends the subscription.
func (m *Membership) Subscribe() (<-chan struct{}, func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	id := m.nextSub
	m.nextSub++
	ch := make(chan struct{}, 1)
	m.subs[id] = ch
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, id)
		m.mu.Unlock()
	}
}

// View is one node's view of a Membership.
type View struct {
	*Membership
	self string
}

// View returns the view of node self.
func (m *Membership) View(self string) *View { return &View{Membership: m, self: self} }

// Self returns the viewing node's member entry.
func (v *View) Self() overlay.Member {
	mem, _ := v.Member(v.self)
	return mem
}

// Eventually calls f until it returns nil or timeout passes, then fails
// the test with f's last error.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	retry.Eventually(t, timeout, f)
}

// LogBuffer is a concurrency-safe log sink for asserting on log lines.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns what was logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Logger returns a text logger at debug level writing to b.
func (b *LogBuffer) Logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Names returns n node names n01, n02, ….
func Names(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%02d", i+1)
	}
	return out
}

// Sorted returns a sorted copy of s.
func Sorted(s []string) []string {
	out := slices.Clone(s)
	slices.Sort(out)
	return out
}
