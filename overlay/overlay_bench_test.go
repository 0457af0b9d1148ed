package overlay

import (
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
)

// The benchmarks use memberlist's LAN preset untouched: their figures are
// what a real cluster on one LAN sees, give or take the TLS cost on a
// shared CPU. Run them once: go test -run '^$' -bench . -benchtime 1x ./overlay/

// benchMaterials issues n node certificates once for every iteration.
func benchMaterials(b *testing.B, n int) []*certs.Material {
	b.Helper()
	ca := newTestCA(b, "example.test")
	ms := make([]*certs.Material, n)
	for i := range ms {
		ms[i] = ca.material(fmt.Sprintf("n%02d", i+1), fmt.Sprintf("dc%d", i%2+1))
	}
	return ms
}

// benchStart starts one overlay per material, unjoined.
func benchStart(b *testing.B, ms []*certs.Material) []*Overlay {
	b.Helper()
	nodes := make([]*Overlay, len(ms))
	for i, m := range ms {
		cfg := DefaultConfig()
		cfg.Material = m
		cfg.BindAddr = "127.0.0.1"
		cfg.Port = 0
		cfg.Logger = slog.New(slog.DiscardHandler)
		o, err := New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		nodes[i] = o
	}
	return nodes
}

func benchStop(nodes []*Overlay) {
	var wg sync.WaitGroup
	for _, o := range nodes {
		wg.Add(1)
		go func() { defer wg.Done(); _ = o.Shutdown() }()
	}
	wg.Wait()
}

// joinAll has every node join the first at once, as nodes booting together
// with one seed do.
func joinAll(b *testing.B, nodes []*Overlay) {
	b.Helper()
	seed := []string{nodes[0].GossipAddr()}
	errs := make(chan error, len(nodes))
	var wg sync.WaitGroup
	for _, o := range nodes[1:] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := o.Join(seed); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// waitFor polls cond every 5ms up to timeout.
func waitFor(b *testing.B, timeout time.Duration, what string, cond func() bool) {
	b.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			b.Fatalf("%s: not within %s", what, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func allSeeAlive(nodes []*Overlay, n int) bool {
	for _, o := range nodes {
		if len(aliveNames(o)) != n {
			return false
		}
	}
	return true
}

// BenchmarkConverge measures the time from the joins to every node seeing
// every node alive.
func BenchmarkConverge(b *testing.B) {
	for _, n := range []int{3, 10, 30} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			ms := benchMaterials(b, n)
			var total time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				nodes := benchStart(b, ms)
				b.StartTimer()
				t0 := time.Now()
				joinAll(b, nodes)
				waitFor(b, 60*time.Second, "convergence", func() bool { return allSeeAlive(nodes, n) })
				total += time.Since(t0)
				b.StopTimer()
				benchStop(nodes)
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()*1000/float64(b.N), "ms/converge")
		})
	}
}

// BenchmarkDetectKilled measures the time from a node's crash to every
// survivor listing it dead and off the rings.
func BenchmarkDetectKilled(b *testing.B) {
	for _, n := range []int{3, 10} {
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			ms := benchMaterials(b, n)
			var total time.Duration
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				nodes := benchStart(b, ms)
				joinAll(b, nodes)
				waitFor(b, 60*time.Second, "convergence", func() bool { return allSeeAlive(nodes, n) })
				victim := nodes[n-1]
				name := victim.Name()
				b.StartTimer()
				t0 := time.Now()
				_ = victim.Shutdown()
				waitFor(b, 60*time.Second, "detection", func() bool {
					for _, o := range nodes[:n-1] {
						m, _ := o.Member(name)
						if m.State != StateDead || onRings(o, name) {
							return false
						}
					}
					return true
				})
				total += time.Since(t0)
				b.StopTimer()
				benchStop(nodes[:n-1])
				b.StartTimer()
			}
			b.ReportMetric(total.Seconds()/float64(b.N), "s/detect")
		})
	}
}

// BenchmarkGossipBytes30 measures what a settled 30-node mesh costs each
// node on the wire (TLS records included), in and out, over one 30 s
// push/pull period, so that probes, gossip and push/pulls all count.
func BenchmarkGossipBytes30(b *testing.B) {
	const n = 30
	const window = 30 * time.Second
	ms := benchMaterials(b, n)
	var sentPerNode, recvPerNode float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		nodes := benchStart(b, ms)
		joinAll(b, nodes)
		waitFor(b, 60*time.Second, "convergence", func() bool { return allSeeAlive(nodes, n) })
		time.Sleep(2 * time.Second) // let the join broadcasts die down
		b.StartTimer()
		sent0, recv0 := meshBytes(b, nodes)
		time.Sleep(window)
		sent1, recv1 := meshBytes(b, nodes)
		b.StopTimer()
		sentPerNode += (sent1 - sent0) / window.Seconds() / n
		recvPerNode += (recv1 - recv0) / window.Seconds() / n
		if !allSeeAlive(nodes, n) {
			b.Fatal("the mesh lost members while measured")
		}
		benchStop(nodes)
		b.StartTimer()
	}
	b.ReportMetric(sentPerNode/float64(b.N), "sent-B/s/node")
	b.ReportMetric(recvPerNode/float64(b.N), "recv-B/s/node")
}

func meshBytes(b *testing.B, nodes []*Overlay) (sent, recv float64) {
	for _, o := range nodes {
		sent += counterValue(b, o.met.sentBytes)
		recv += counterValue(b, o.met.recvBytes)
	}
	return sent, recv
}
