package store_test

// Cluster tests: every node is a real overlay (memberlist over mTLS) plus
// an rpc server and a store on 127.0.0.1, in this process. A crash is an
// abrupt overlay Shutdown and rpc server Stop: no goodbye, connections
// reset, failure found by probing.

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/store"
)

// overlayJoiner starts a real overlay per node and joins it to the nodes
// started before it.
func overlayJoiner() joiner {
	var (
		mu    sync.Mutex
		alive = map[string]*overlay.Overlay{}
	)
	return func(tb testing.TB, mat *certs.Material, rpcAddr string) (membership, func(), func()) {
		tb.Helper()
		cfg := overlay.DefaultConfig()
		cfg.Material = mat
		cfg.BindAddr = "127.0.0.1"
		cfg.Port = 0
		cfg.Timing = overlay.TimingLAN
		cfg.Roles = []string{role}
		cfg.Services = map[string]string{overlay.ServiceRPC: rpcAddr}
		cfg.Tune = func(c *memberlist.Config) {
			// Failure found in a few seconds, with a probe timeout that
			// stays generous for a loaded 2-core machine under -race.
			c.ProbeInterval = 500 * time.Millisecond
			c.ProbeTimeout = 300 * time.Millisecond
			c.SuspicionMult = 3
			c.GossipInterval = 50 * time.Millisecond
			c.PushPullInterval = 2 * time.Second
			c.TCPTimeout = 5 * time.Second
		}
		o, err := overlay.New(cfg)
		if err != nil {
			tb.Fatalf("overlay of %s: %v", mat.Self.Name, err)
		}
		mu.Lock()
		var seeds []string
		for _, other := range alive {
			seeds = append(seeds, other.GossipAddr())
		}
		alive[mat.Self.Name] = o
		mu.Unlock()
		if len(seeds) > 0 {
			if _, err := o.Join(seeds); err != nil {
				tb.Fatalf("%s joins %v: %v", mat.Self.Name, seeds, err)
			}
		}
		gone := func() {
			mu.Lock()
			delete(alive, mat.Self.Name)
			mu.Unlock()
		}
		var once sync.Once
		tb.Cleanup(func() { once.Do(func() { o.Shutdown() }) })
		crash := func() { gone(); once.Do(func() { o.Shutdown() }) }
		leave := func() { gone(); once.Do(func() { o.Leave(5 * time.Second) }) }
		return o, crash, leave
	}
}

// overlayCluster starts nodes named after dcs' entries, each in its
// datacenter, and waits until they all see the same ring.
func overlayCluster(t *testing.T, dcs []string, config func(string) store.Config) *cluster {
	t.Helper()
	c := newCluster(t, overlayJoiner(), config)
	for i, dc := range dcs {
		c.start(fmt.Sprintf("n%02d", i+1), dc)
	}
	c.waitRing(20 * time.Second)
	return c
}

func TestClusterSurvivesTwoCrashes(t *testing.T) {
	nkeys := 10000
	if testing.Short() {
		nkeys = 2000
	}
	c := overlayCluster(t, []string{"dc1", "dc1", "dc1", "dc1", "dc1"}, nil)
	keys := keysN(nkeys)
	start := time.Now()
	c.writeAll(keys)
	t.Logf("wrote %d keys through random nodes in %s", nkeys, time.Since(start))
	c.waitCopies(keys, 2, 30*time.Second)

	// First crash: every key readable from every survivor at once, before
	// the mesh even noticed (reads fall back to the other holder).
	c.crash("n03")
	start = time.Now()
	c.readAllFrom(keys)
	t.Logf("read %d keys from each of 4 survivors in %s", nkeys, time.Since(start))
	c.waitRing(20 * time.Second)
	took := c.waitCopies(keys, 2, 60*time.Second)
	t.Logf("2 copies of every key again %s after the ring changed", took)

	// Second crash: nothing lost.
	c.crash("n01")
	c.readAllFrom(keys)
	c.waitRing(20 * time.Second)
	c.waitCopies(keys, 2, 60*time.Second)
	c.readAllFrom(keys)
}

func TestClusterJoinTakesItsShare(t *testing.T) {
	c := overlayCluster(t, []string{"dc1", "dc1", "dc1", "dc1"}, nil)
	keys := keysN(2000)
	c.writeAll(keys)
	c.waitCopies(keys, 2, 30*time.Second)
	n := c.start("n05", "dc1")
	c.waitRing(20 * time.Second)
	took := c.waitCopies(keys, 2, 60*time.Second)
	share := float64(n.store.Count()) / float64(2*len(keys))
	t.Logf("n05 holds %d keys, %.3f of all copies (1/5 = 0.2), placed %s after the ring changed", n.store.Count(), share, took)
	if share < 0.1 || share > 0.3 {
		t.Fatalf("the fifth node holds %.3f of the copies, want about 1/5", share)
	}
	c.readAllFrom(keys)
}

func TestClusterGracefulLeaveHandsOff(t *testing.T) {
	// R=1: a node that left without handing off would take its keys with it.
	c := overlayCluster(t, []string{"dc1", "dc1", "dc1", "dc1"}, func(string) store.Config {
		cfg := testConfig()
		cfg.Replicas, cfg.WriteQuorum = 1, 1
		cfg.AntiEntropyInterval = time.Hour
		return cfg
	})
	keys := keysN(2000)
	c.writeAll(keys)
	c.waitCopies(keys, 1, 30*time.Second)
	leaving := c.node("n02").store.Count()
	if leaving == 0 {
		t.Fatal("n02 holds nothing: the test proves nothing")
	}
	if err := c.leaveGracefully("n02"); err != nil {
		t.Fatalf("handoff: %v", err)
	}
	c.waitRing(20 * time.Second)
	c.readAllFrom(keys)
	c.waitCopies(keys, 1, 30*time.Second)
	t.Logf("n02 handed off %d keys before leaving", leaving)
}

func TestClusterCopiesInEachDatacenter(t *testing.T) {
	c := overlayCluster(t, []string{"east", "east", "east", "west", "west"}, nil)
	keys := keysN(2000)
	c.writeAll(keys)
	check := func() {
		t.Helper()
		c.waitCopies(keys, 2, 30*time.Second)
		dcOf := map[string]string{}
		for _, n := range c.alive() {
			dcOf[n.name] = n.mat.Self.Datacenter
		}
		for k, holders := range c.holdersOf() {
			var dcs []string
			for _, h := range holders {
				dcs = append(dcs, dcOf[h])
			}
			slices.Sort(dcs)
			if !slices.Equal(dcs, []string{"east", "west"}) {
				t.Fatalf("%s is held in %v (by %v), want one copy in each datacenter", k, dcs, holders)
			}
		}
	}
	check()
	// A west node crashes: the other west node holds every key's west copy.
	c.crash("n04")
	c.waitRing(20 * time.Second)
	check()
	c.readAllFrom(keys)
}
