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
// one sampling interval, so throughput is that of Max. Setting GOMAXPROCS
// ends the runtime's own updates of it from a container's CPU limit (Go
// 1.25): Max is the limit as the process started.
//
// It owns only that; it knows nothing of SIP or the mesh.
package procs

import (
	"context"
	"log/slog"
	"runtime"
	"syscall"
	"time"
)

// Config tunes the governor. DefaultConfig gives the values `sipmesh run`
// uses.
type Config struct {
	// Max is the most Ps: GOMAXPROCS as the process started (the
	// GOMAXPROCS environment variable, or the CPUs it may use).
	Max int
	// Interval is how often the process's CPU use is sampled while it has
	// all Max Ps (the way down).
	Interval time.Duration
	// UpInterval is how often it is sampled while it has one P (the way
	// up). Load that arrives all at once (a trunk's traffic after a
	// quiet spell, a benchmark's next run) finds the process on one P,
	// and until a sample sees it every message waits in a backlog that
	// one core works off more slowly than it grows: with a 250 ms sample
	// at 2,400 calls/s, the first 200-500 ms of traffic after an idle
	// spell took 7-9 ms per pass in the node instead of 1, a run's
	// whole 1% tail (perf sched: the node on one core, the other idle).
	UpInterval time.Duration
	// Up is the CPU use, in cores, above which all Max Ps are used.
	Up float64
	// Down is the CPU use below which, for DownAfter samples in a row,
	// one P is used again. Between Down and Up nothing changes, so a load
	// near one threshold does not flap.
	Down      float64
	DownAfter int
	Logger    *slog.Logger
	// CPU returns the CPU time the process has used; SetProcs sets
	// GOMAXPROCS. Tests replace them.
	CPU      func() time.Duration
	SetProcs func(n int)
}

// DefaultConfig uses all Ps as soon as 20 ms on one P show more than half
// a core, and one again after two seconds (eight samples of 250 ms) below
// a quarter.
func DefaultConfig() Config {
	return Config{
		Max:        runtime.GOMAXPROCS(0),
		Interval:   250 * time.Millisecond,
		UpInterval: 20 * time.Millisecond,
		Up:         0.5,
		Down:       0.25,
		DownAfter:  8,
		Logger:     slog.New(slog.DiscardHandler),
		CPU:        processCPU,
		SetProcs:   func(n int) { runtime.GOMAXPROCS(n) },
	}
}

// Run governs GOMAXPROCS until ctx is done, then sets it back to Max. With
// Max 1 there is nothing to govern and it returns at once.
func Run(ctx context.Context, cfg Config) {
	if cfg.Max <= 1 {
		return
	}
	g := &governor{cfg: cfg, procs: cfg.Max}
	defer cfg.SetProcs(cfg.Max)
	t := time.NewTimer(g.interval())
	defer t.Stop()
	last, lastCPU := time.Now(), cfg.CPU()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cpu := cfg.CPU()
			cores := (cpu - lastCPU).Seconds() / now.Sub(last).Seconds()
			last, lastCPU = now, cpu
			if n, changed := g.observe(cores); changed {
				cfg.SetProcs(n)
				cfg.Logger.Debug("procs: GOMAXPROCS set", "procs", n, "cores_used", cores)
			}
			t.Reset(g.interval())
		}
	}
}

// governor is Run's decision, apart from clocks and the runtime.
type governor struct {
	cfg   Config
	procs int
	low   int // samples in a row below Down
}

// interval is how long until the next sample: UpInterval on one P (when
// set), Interval on all.
func (g *governor) interval() time.Duration {
	if g.procs < g.cfg.Max && g.cfg.UpInterval > 0 {
		return g.cfg.UpInterval
	}
	return g.cfg.Interval
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
