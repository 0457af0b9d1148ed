package store_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/overlay/rpc/rpctest"
	"github.com/sipmesh/sipmesh/overlay/store"
)

// latencies collects per-operation latencies from parallel goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d []time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d...)
	l.mu.Unlock()
}

func (l *latencies) report(b *testing.B, elapsed time.Duration) {
	slices.Sort(l.d)
	if len(l.d) == 0 {
		return
	}
	pct := func(p float64) float64 {
		return float64(l.d[int(p*float64(len(l.d)-1))].Microseconds())
	}
	b.ReportMetric(pct(0.50), "p50-µs")
	b.ReportMetric(pct(0.99), "p99-µs")
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), "ops/s")
}

// runTimed runs op b.N times over clients goroutines and reports
// throughput and latency percentiles.
func runTimed(b *testing.B, clients int, op func(i int) error) {
	var (
		lat  latencies
		next atomic.Int64
		wg   sync.WaitGroup
	)
	b.ResetTimer()
	start := time.Now()
	for range clients {
		wg.Go(func() {
			var mine []time.Duration
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					break
				}
				t0 := time.Now()
				if err := op(i); err != nil {
					b.Error(err)
					break
				}
				mine = append(mine, time.Since(t0))
			}
			lat.add(mine)
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	lat.report(b, elapsed)
}

// BenchmarkStore3Nodes measures Put and Get through one node of three
// (R=2, W=2) on loopback, beside a no-op Ping between two of the same
// nodes: the floor any replicated operation pays.
func BenchmarkStore3Nodes(b *testing.B) {
	members := rpctest.NewMembership(0)
	c := newCluster(b, fakeJoiner(members), nil)
	for _, name := range rpctest.Names(3) {
		c.start(name, "dc1")
	}
	a := c.node("n01")
	ctx := context.Background()
	keys := keysN(10000)
	ops := []struct {
		name string
		op   func(i int) error
	}{
		{"Ping", func(int) error {
			_, err := a.client.Ping(ctx, "n02")
			return err
		}},
		{"Put", func(i int) error {
			return a.store.Put(ctx, keys[i%len(keys)], store.Record{ID: "c", Value: []byte("sip:alice@192.0.2.1:5060;transport=udp"), Expires: time.Now().Add(time.Hour)})
		}},
		{"Get", func(i int) error {
			recs, err := a.store.Get(ctx, keys[i%len(keys)])
			if err == nil && len(recs) != 1 {
				err = fmt.Errorf("get %s: %d records", keys[i%len(keys)], len(recs))
			}
			return err
		}},
	}
	// Fill every key first so that Get always finds one record.
	if err := forEach(keys, 16, func(k string) error {
		return a.store.Put(ctx, k, store.Record{ID: "c", Value: []byte("x"), Expires: time.Now().Add(time.Hour)})
	}); err != nil {
		b.Fatal(err)
	}
	for _, clients := range []int{1, 16} {
		for _, o := range ops {
			b.Run(fmt.Sprintf("%s/clients=%d", o.name, clients), func(b *testing.B) {
				runTimed(b, clients, o.op)
			})
		}
	}
}

// preload places one record per key directly on its holders, as if
// written by Put, without paying 100,000 RPCs in the setup.
func preload(c *cluster, keys []string) {
	view := c.alive()[0].store
	exp := time.Now().Add(time.Hour)
	for i, k := range keys {
		for _, h := range view.Replicas(k) {
			c.node(h).store.LoadLocal(k, store.Record{ID: "c1", Value: []byte("v:" + k), Version: uint64(1<<40 + i), Writer: "n01", Expires: exp})
		}
	}
}

// benchCluster starts n nodes on an in-memory membership (failure
// detection is instant, so the figure is the store's own) with
// anti-entropy far apart, so that ring-change handoff alone is measured.
func benchCluster(b *testing.B, n int) *cluster {
	members := rpctest.NewMembership(0)
	c := newCluster(b, fakeJoiner(members), func(string) store.Config {
		cfg := store.DefaultConfig(role)
		cfg.AntiEntropyInterval = time.Hour
		if os.Getenv("STORE_BENCH_LOG") != "" {
			cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		}
		return cfg
	})
	for _, name := range rpctest.Names(n) {
		c.start(name, "dc1")
	}
	return c
}

const benchItems = 100000

// BenchmarkRestoreAfterCrash100k: 4 nodes, R=2, 100,000 keys; one node
// crashes; time until every key has its 2 copies on its new holders.
func BenchmarkRestoreAfterCrash100k(b *testing.B) {
	for range b.N {
		b.StopTimer()
		c := benchCluster(b, 4)
		keys := keysN(benchItems)
		preload(c, keys)
		lost := c.node("n02").store.Count()
		b.StartTimer()
		start := time.Now()
		c.crash("n02")
		took := c.waitCopiesFast(keys, 2, time.Minute)
		b.StopTimer()
		_ = start
		b.ReportMetric(took.Seconds(), "restore-s")
		b.ReportMetric(float64(lost), "keys-on-crashed")
	}
}

// BenchmarkHandoff100k: 3 nodes, R=2, 100,000 keys. "leave": time of
// Handoff on a node before it leaves; "join": time until a fourth node
// that joins holds its share and every key sits on its new holders.
func BenchmarkHandoff100k(b *testing.B) {
	b.Run("leave", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			c := benchCluster(b, 3)
			preload(c, keysN(benchItems))
			n := c.node("n02")
			held := n.store.Count()
			b.StartTimer()
			start := time.Now()
			if err := n.store.Handoff(context.Background()); err != nil {
				b.Fatal(err)
			}
			took := time.Since(start)
			b.StopTimer()
			b.ReportMetric(took.Seconds(), "handoff-s")
			b.ReportMetric(float64(held), "keys-handed-off")
		}
	})
	b.Run("join", func(b *testing.B) {
		for range b.N {
			b.StopTimer()
			c := benchCluster(b, 3)
			keys := keysN(benchItems)
			preload(c, keys)
			b.StartTimer()
			n := c.start("n04", "dc1")
			took := c.waitCopiesFast(keys, 2, time.Minute)
			b.StopTimer()
			b.ReportMetric(took.Seconds(), "join-s")
			b.ReportMetric(float64(n.store.Count()), "keys-taken")
		}
	})
}
