package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/ring"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/rpctest"
	"github.com/sipmesh/sipmesh/overlay/store"
)

const role = "registrar"

// membership is what a test node's overlay gives: the store's view, the
// rpc client's view, and how the node crashes or leaves.
type membership interface {
	store.Membership
	rpc.Membership
}

// joiner puts a node into the cluster's membership. It is given the
// node's identity and RPC address and returns the node's view and
// functions to crash it (no goodbye) and to make it leave gracefully.
type joiner func(tb testing.TB, mat *certs.Material, rpcAddr string) (m membership, crash, leave func())

// tnode is one in-process node: rpc server + client, registry, store.
type tnode struct {
	name   string
	mat    *certs.Material
	srv    *rpc.Server
	client *rpc.Client
	store  *store.Store
	m      membership
	crash  func()
	leave  func()
	down   bool
}

func ringOf(n *tnode) *ring.Ring { return n.m.Ring(role) }

type cluster struct {
	tb     testing.TB
	ca     *rpctest.CA
	join   joiner
	config func(name string) store.Config
	mu     sync.Mutex
	nodes  map[string]*tnode
	order  []string
}

func newCluster(tb testing.TB, join joiner, config func(string) store.Config) *cluster {
	if config == nil {
		config = func(string) store.Config { return testConfig() }
	}
	return &cluster{tb: tb, ca: rpctest.NewCA(tb), join: join, config: config, nodes: map[string]*tnode{}}
}

// testConfig is the default store config of tests: fast anti-entropy.
func testConfig() store.Config {
	cfg := store.DefaultConfig(role)
	cfg.AntiEntropyInterval = 300 * time.Millisecond
	cfg.RPCTimeout = 10 * time.Second
	return cfg
}

// start brings up a node named name in datacenter dc.
func (c *cluster) start(name, dc string) *tnode {
	tb := c.tb
	tb.Helper()
	n := &tnode{name: name, mat: c.ca.Material(certs.IssueRequest{Name: name, Datacenter: dc, Roles: []string{role}})}
	srv, err := rpc.NewServer(rpc.ServerConfig{Material: n.mat})
	if err != nil {
		tb.Fatal(err)
	}
	reg := store.NewRegistry()
	reg.Register(srv)
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	n.srv = srv
	m, crash, leave := c.join(tb, n.mat, addr.String())
	n.m, n.crash, n.leave = m, crash, leave
	cl, err := rpc.NewClient(rpc.ClientConfig{Material: n.mat}, m)
	if err != nil {
		tb.Fatal(err)
	}
	n.client = cl
	st, err := store.New(c.config(name), m, cl)
	if err != nil {
		tb.Fatal(err)
	}
	if err := reg.Add(st); err != nil {
		tb.Fatal(err)
	}
	n.store = st
	c.mu.Lock()
	if _, again := c.nodes[name]; !again {
		c.order = append(c.order, name)
	}
	c.nodes[name] = n
	c.mu.Unlock()
	tb.Cleanup(func() { c.stop(n) })
	return n
}

func (c *cluster) stop(n *tnode) {
	c.mu.Lock()
	if n.down {
		c.mu.Unlock()
		return
	}
	n.down = true
	c.mu.Unlock()
	n.srv.Stop()
	n.store.Close()
	n.client.Close()
}

// crash stops a node abruptly: its overlay vanishes without a goodbye and
// its RPC server closes every connection.
func (c *cluster) crash(name string) {
	n := c.node(name)
	n.crash()
	c.stop(n)
}

// leaveGracefully hands the node's data off, then leaves.
func (c *cluster) leaveGracefully(name string) error {
	n := c.node(name)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := n.store.Handoff(ctx)
	n.leave()
	c.stop(n)
	return err
}

func (c *cluster) node(name string) *tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.nodes[name]
	if !ok {
		c.tb.Fatalf("no node %s", name)
	}
	return n
}

// alive lists the nodes up, in start order.
func (c *cluster) alive() []*tnode {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tnode
	for _, name := range c.order {
		if n := c.nodes[name]; !n.down {
			out = append(out, n)
		}
	}
	return out
}

func (c *cluster) random() *tnode {
	a := c.alive()
	return a[rand.IntN(len(a))]
}

// waitRing waits until every node up sees a ring of exactly those nodes.
func (c *cluster) waitRing(timeout time.Duration) {
	c.tb.Helper()
	rpctest.Eventually(c.tb, timeout, func() error {
		var want []string
		for _, n := range c.alive() {
			want = append(want, n.name)
		}
		slices.Sort(want)
		for _, n := range c.alive() {
			var got []string
			for _, rn := range ringOf(n).Nodes() {
				got = append(got, rn.Name)
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("%s sees ring %v, want %v", n.name, got, want)
			}
		}
		return nil
	})
}

// waitRounds waits until every node up has completed n more
// anti-entropy rounds.
func (c *cluster) waitRounds(n uint64) {
	c.tb.Helper()
	start := map[string]uint64{}
	for _, nd := range c.alive() {
		start[nd.name] = nd.store.Rounds()
	}
	rpctest.Eventually(c.tb, 30*time.Second, func() error {
		for _, nd := range c.alive() {
			if got := nd.store.Rounds() - start[nd.name]; got < n {
				nd.store.AntiEntropy()
				return fmt.Errorf("%s ran %d anti-entropy rounds, want %d", nd.name, got, n)
			}
		}
		return nil
	})
}

// holdersOf lists, for each key, the nodes up that hold it locally.
func (c *cluster) holdersOf() map[string][]string {
	out := map[string][]string{}
	for _, n := range c.alive() {
		for _, k := range n.store.Keys() {
			out[k] = append(out[k], n.name)
		}
	}
	return out
}

// waitCopies waits until each of keys is held by exactly want nodes, those
// the ring names, and no other key is held anywhere. It returns how long
// that took.
func (c *cluster) waitCopies(keys []string, want int, timeout time.Duration) time.Duration {
	c.tb.Helper()
	start := time.Now()
	rpctest.Eventually(c.tb, timeout, func() error { return c.placed(keys, want) })
	return time.Since(start)
}

// placed checks that each of keys is held by exactly want nodes, those the
// ring names, and that no other key is held anywhere.
func (c *cluster) placed(keys []string, want int) error {
	held := c.holdersOf()
	view := c.alive()[0]
	bad := 0
	var example string
	for _, k := range keys {
		got := rpctest.Sorted(held[k])
		should := rpctest.Sorted(view.store.Replicas(k))
		if len(got) != want || !slices.Equal(got, should) {
			if bad == 0 {
				example = fmt.Sprintf("%s is on %v, should be on %v", k, got, should)
			}
			bad++
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d keys do not have their %d copies (e.g. %s)", bad, len(keys), want, example)
	}
	if len(held) != len(keys) {
		return fmt.Errorf("%d keys held, want %d", len(held), len(keys))
	}
	return nil
}

// waitCopiesFast is waitCopies for large stores: it polls the cheap total
// count and checks placement only once the total is right.
func (c *cluster) waitCopiesFast(keys []string, want int, timeout time.Duration) time.Duration {
	c.tb.Helper()
	start := time.Now()
	deadline := start.Add(timeout)
	for time.Now().Before(deadline) {
		total := 0
		for _, n := range c.alive() {
			total += n.store.Count()
		}
		if total == want*len(keys) {
			// The time is taken before the slow check: what was true then
			// is what the check sees unless something moved meanwhile,
			// and then it fails and polling goes on.
			took := time.Since(start)
			if err := c.placed(keys, want); err == nil {
				return took
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.tb.Fatalf("keys not on their %d holders after %s: %v", want, timeout, c.placed(keys, want))
	return 0
}

// forEach runs f on items with a few workers and returns the first error.
func forEach[T any](items []T, workers int, f func(T) error) error {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
		next  = make(chan T)
	)
	for range workers {
		wg.Go(func() {
			for it := range next {
				if err := f(it); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		})
	}
	for _, it := range items {
		next <- it
	}
	close(next)
	wg.Wait()
	return first
}

func keysN(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("sip:user%05d@example.test", i)
	}
	return out
}

func ctxT(tb testing.TB, d time.Duration) context.Context {
	c, cancel := context.WithTimeout(context.Background(), d)
	tb.Cleanup(cancel)
	return c
}

// writeAll writes one record per key through random nodes.
func (c *cluster) writeAll(keys []string) {
	c.tb.Helper()
	ctx := ctxT(c.tb, 5*time.Minute)
	err := forEach(keys, 16, func(k string) error {
		return c.random().store.Put(ctx, k, store.Record{ID: "c1", Value: []byte("v:" + k)})
	})
	if err != nil {
		c.tb.Fatalf("writing %d keys: %v", len(keys), err)
	}
}

// readAllFrom reads every key through every node up, in batches
// (GetMany) and, for a sample, one by one (Get), and fails on a key that is
// missing or wrong.
func (c *cluster) readAllFrom(keys []string) {
	c.tb.Helper()
	ctx := ctxT(c.tb, 5*time.Minute)
	sample := keys
	if len(sample) > 200 {
		sample = make([]string, 200)
		for i := range sample {
			sample[i] = keys[rand.IntN(len(keys))]
		}
	}
	for _, n := range c.alive() {
		got, err := n.store.GetMany(ctx, keys)
		if err != nil {
			c.tb.Fatalf("%s: get many: %v", n.name, err)
		}
		var missing []string
		for _, k := range keys {
			if recs := got[k]; len(recs) != 1 || string(recs[0].Value) != "v:"+k {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			c.tb.Fatalf("%s: %d of %d keys missing or wrong, e.g. %s", n.name, len(missing), len(keys), missing[0])
		}
		err = forEach(sample, 8, func(k string) error {
			recs, err := n.store.Get(ctx, k)
			if err != nil {
				return fmt.Errorf("%s: get %s: %w", n.name, k, err)
			}
			if len(recs) != 1 || string(recs[0].Value) != "v:"+k {
				return fmt.Errorf("%s: get %s = %+v", n.name, k, recs)
			}
			return nil
		})
		if err != nil {
			c.tb.Fatal(err)
		}
	}
}

// fakeJoiner joins nodes to an in-memory membership where failures are
// detected at once: for unit tests and benchmarks that measure the store,
// not failure detection.
func fakeJoiner(members *rpctest.Membership) joiner {
	return func(tb testing.TB, mat *certs.Material, rpcAddr string) (membership, func(), func()) {
		name := mat.Self.Name
		members.Set(overlay.Member{Name: name, Datacenter: mat.Self.Datacenter, Roles: mat.Self.Roles, Services: map[string]string{overlay.ServiceRPC: rpcAddr}})
		return members.View(name), func() { members.SetState(name, overlay.StateDead) }, func() { members.SetState(name, overlay.StateLeft) }
	}
}
