// Package gcgoal sets the Go collector's GOGC after every collection so
// that the heap may grow to a fixed budget before the next one, and by at
// least a minimum percentage of the live heap beyond it.
//
// Why: the collector's CPU is roughly proportional to how often it runs,
// and with GOGC alone that is the rate of allocation divided by a multiple
// of the live heap. A SIP node's live heap is small (a registrar with a few
// thousand bindings holds tens of MB) while every message allocates a few
// KB that die at once, so at thousands of messages a second a small heap
// was collected dozens of times a second: at 20,000 REGISTERs/s the
// collector was a quarter of the node's CPU (pprof, make bench). Kamailio
// takes a fixed shared-memory pool at start (-m, 64 MB by default) and
// frees into it; a budget gives a node the same room, used only as long
// as the live heap is small. Once the live heap reaches half the budget
// the minimum percentage rules, as plain GOGC would, so a big node (100,000
// bindings) is not made bigger.
//
// It owns only that; it knows nothing of SIP or the mesh.
package gcgoal

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
)

// Config tunes the pacing. DefaultConfig gives the values `sipmesh run`
// uses.
type Config struct {
	// Budget is the heap, in bytes, the collector lets the process reach
	// before it runs, while the live heap is small enough.
	Budget uint64
	// MinPercent is the least GOGC: the heap always grows by at least
	// this percentage of the live heap between collections.
	MinPercent int
	Logger     *slog.Logger
	// Live returns the live heap as the last collection marked it;
	// SetPercent sets GOGC. Tests replace them.
	Live       func() uint64
	SetPercent func(percent int)
}

// DefaultConfig is a 128 MiB budget and GOGC at least 200 (which alone cut
// a node's CPU per REGISTER by a sixth against the runtime's 100).
func DefaultConfig() Config {
	return Config{
		Budget:     128 << 20,
		MinPercent: 200,
		Logger:     slog.New(slog.DiscardHandler),
		Live:       liveHeap,
		SetPercent: func(p int) { debug.SetGCPercent(p) },
	}
}

// Percent is the GOGC that makes the next collection's goal the budget,
// and at least MinPercent, for a live heap of live bytes.
//
// A live heap under the runtime's floor counts as the floor: the runtime
// makes the goal at least heapFloor × GOGC/100, so the goal is the budget
// then too, a node just started included (live 0). It was capped at GOGC
// 1,000 before, and a node whose live heap was a few MB had a goal far
// under the budget that rose with every collection as its live heap
// grew: each rise was heap never touched before, and the page faults
// that brought it in (40,000-50,000 a second for 60-100 ms before each of
// those collections, REGISTER-auth at 16,000/s) held every message the
// node had for 10-17 ms. With the goal at the budget, the heap is faulted
// in once and used again.
func (c Config) Percent(live uint64) int {
	p := int64(c.Budget)*100/int64(max(live, heapFloor)) - 100
	return int(max(p, int64(c.MinPercent)))
}

// heapFloor is the runtime's least heap goal at GOGC 100 (heapMinimum,
// 4 MiB), which it scales by GOGC/100.
const heapFloor = 4 << 20

// Run sets GOGC now and again after every collection until ctx is done,
// then leaves MinPercent in place. The runtime recomputes the goal of the
// cycle under way when GOGC is set, from the heap the last one marked.
func Run(ctx context.Context, cfg Config) {
	set := func(last int) int {
		live := cfg.Live()
		p := cfg.Percent(live)
		// Set whenever it changes: left alone within a tenth, as it was,
		// the goal wandered up to a tenth over the budget, and each new
		// high was heap faulted in (Percent). It costs the heap lock once
		// a collection.
		if p != last {
			cfg.SetPercent(p)
			cfg.Logger.Debug("gcgoal: GOGC set", "percent", p, "live_bytes", live)
			return p
		}
		return last
	}
	last := set(0)
	cycles := make(chan struct{}, 1)
	onEveryCycle(ctx, cycles)
	for {
		select {
		case <-ctx.Done():
			cfg.SetPercent(cfg.MinPercent)
			return
		case <-cycles:
			last = set(last)
		}
	}
}

// onEveryCycle signals c after each garbage collection until ctx is done:
// a sentinel that nothing references is cleaned up by the first cycle
// after it is made, and its cleanup makes the next one.
func onEveryCycle(ctx context.Context, c chan<- struct{}) {
	s := new(sentinel)
	runtime.AddCleanup(s, func(struct{}) {
		if ctx.Err() != nil {
			return
		}
		select {
		case c <- struct{}{}:
		default: // Run has a signal pending already
		}
		onEveryCycle(ctx, c)
	}, struct{}{})
}

// sentinel has a pointer-free field so that it is a heap object of its own
// (a zero-sized one would not be collected).
type sentinel struct{ _ [16]byte }

// liveHeap is the heap the last collection marked live.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}
