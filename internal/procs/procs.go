// Package procs scales the Go runtime's GOMAXPROCS with the process's load:
// one P while the process uses little CPU, all of them once it needs more
// than a core's share.
//
// With several Ps, a goroutine made runnable (a datagram read, a timer, the
// goroutine sipgo starts per message) is often handed to another P whose
// thread the scheduler wakes for it, and at a low message rate every
// message pays for those wake-ups and for the cache of the core it moves
// to. Kamailio's processes do not hand work to each other. At 100 calls a
// second a node with GOMAXPROCS=2 spent 1.09 times Kamailio's CPU per call,
// with 1 0.81 times (make bench). Under load the other Ps are back within
// one sampling interval, so throughput is that of Max, or at once when the
// process says work is waiting for it (Governor.Behind). Setting GOMAXPROCS
// ends the runtime's own updates of it from a container's CPU limit (Go
// 1.25): Max is the limit as the process started.
//
// It owns only that; it knows nothing of SIP or the mesh.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Config tunes the governor. DefaultConfig gives the values `sipmesh run`
// uses.
type Config struct {
	// Max is the most Ps: GOMAXPROCS as the process started (the
	// GOMAXPROCS environment variable, or the CPUs it may use).
	Max int
	// Interval is how often the process's CPU use is sampled.
	Interval time.Duration
	// Up is the CPU use, in cores, above which all Max Ps are used.
	Up float64
	// Down is the CPU use below which, for DownAfter samples in a row,
	// one P is used again. Between Down and Up nothing changes, so a load
	// near one threshold does not flap.
	Down      float64
	DownAfter int
	// BehindAfter is the wait that Behind takes, on one P, as the sign
	// that one is not enough.
	BehindAfter time.Duration
	Logger      *slog.Logger
	// CPU returns the CPU time the process has used; SetProcs sets
	// GOMAXPROCS. Tests replace them.
	CPU      func() time.Duration
	SetProcs func(n int)
}

// DefaultConfig samples every 250 ms, uses all Ps above half a core or
// once work waited 2 ms, and one again after two seconds below a quarter.
func DefaultConfig() Config {
	return Config{
		Max:         runtime.GOMAXPROCS(0),
		Interval:    250 * time.Millisecond,
		Up:          0.5,
		Down:        0.25,
		DownAfter:   8,
		BehindAfter: 2 * time.Millisecond,
		Logger:      slog.New(slog.DiscardHandler),
		CPU:         processCPU,
		SetProcs:    func(n int) { runtime.GOMAXPROCS(n) },
	}
}

// Governor governs GOMAXPROCS: Run samples the process's CPU, Behind takes
// the hot path's word that work is waiting.
type Governor struct {
	cfg Config
	one atomic.Bool // on one P: Behind has something to do

	mu sync.Mutex
	d  governor
}

// New returns a governor that Run starts.
func New(cfg Config) *Governor {
	return &Governor{cfg: cfg, d: governor{cfg: cfg, procs: cfg.Max}}
}

// Run governs GOMAXPROCS until ctx is done, then sets it back to Max. With
// Max 1 there is nothing to govern and it returns at once.
func (g *Governor) Run(ctx context.Context) {
	if g.cfg.Max <= 1 {
		return
	}
	defer func() {
		g.mu.Lock()
		defer g.mu.Unlock()
		g.d.procs = g.cfg.Max
		g.set(g.cfg.Max, "stopped", 0)
	}()
	t := time.NewTicker(g.cfg.Interval)
	defer t.Stop()
	last, lastCPU := time.Now(), g.cfg.CPU()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := g.cfg.CPU()
			cores := (cpu - lastCPU).Seconds() / now.Sub(last).Seconds()
			last, lastCPU = now, cpu
			g.mu.Lock()
			if n, changed := g.d.observe(cores); changed {
				g.set(n, "cores_used", cores)
			}
			g.mu.Unlock()
		}
	}
}

// Behind says that work waited that long before the process took it up
// (a datagram in its socket). On one P, a wait of BehindAfter or more
// brings all Ps back at once, without waiting for a sample: load that
// arrives all at once (a trunk's traffic after a quiet spell, a
// benchmark's next run) finds the process on one P, which works off the
// backlog more slowly than it grows. With the 250 ms sample alone, at
// 2,400 calls/s the first 200-500 ms of traffic after an idle spell took
// 7-9 ms per pass in the node instead of 1, a run's whole 1% tail (perf
// sched: the node on one core, the other idle). Sampling every 20 ms
// instead cost an idle process 8 ms of CPU a second in wake-ups. Behind
// is called on the hot path: on all Ps it costs one atomic load.
func (g *Governor) Behind(waited time.Duration) {
	if waited < g.cfg.BehindAfter || !g.one.Load() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.d.procs != g.cfg.Max {
		g.d.procs, g.d.low = g.cfg.Max, 0
		g.set(g.cfg.Max, "waited_ms", float64(waited.Microseconds())/1000)
	}
}

// set sets n Ps and logs why; g.mu is held, so that the runtime's setting
// and g.d's agree.
func (g *Governor) set(n int, why string, value float64) {
	g.cfg.SetProcs(n)
	g.one.Store(n < g.cfg.Max)
	g.cfg.Logger.Debug("procs: GOMAXPROCS set", "procs", n, why, value)
}

// governor is Run's decision, apart from clocks and the runtime.
type governor struct {
	cfg   Config
	procs int
	low   int // samples in a row below Down
}

// observe takes one sample of CPU use, in cores, and returns the Ps to use
// and whether that changed.
func (g *governor) observe(cores float64) (int, bool) {
	switch {
	case cores > g.cfg.Up:
		g.low = 0
		if g.procs != g.cfg.Max {
			g.procs = g.cfg.Max
			return g.procs, true
		}
	case cores < g.cfg.Down:
		g.low++
		if g.low >= g.cfg.DownAfter && g.procs != 1 {
			g.procs = 1
			return g.procs, true
		}
	default:
		g.low = 0
	}
	return g.procs, false
}

// processCPU is the user and system CPU time of the whole process.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
