package procs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/internal/retry"
)

func TestGovernor(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Max, cfg.Up, cfg.Down, cfg.DownAfter = 4, 0.5, 0.25, 3
	for _, tc := range []struct {
		name    string
		samples []float64 // cores used, one per interval
		want    []int     // Ps after each sample
	}{
		{"idle drops to one after DownAfter samples", []float64{0.1, 0.1, 0.1, 0.1}, []int{4, 4, 1, 1}},
		{"load brings all back at once", []float64{0.1, 0.1, 0.1, 0.9, 0.9}, []int{4, 4, 1, 4, 4}},
		{"between the thresholds nothing changes", []float64{0.4, 0.4, 0.4, 0.4}, []int{4, 4, 4, 4}},
		{"a sample between resets the count", []float64{0.1, 0.1, 0.3, 0.1, 0.1, 0.1}, []int{4, 4, 4, 4, 4, 1}},
		{"one P stays below Up", []float64{0, 0, 0, 0.45, 0.3, 0.5}, []int{4, 4, 1, 1, 1, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := &governor{cfg: cfg, procs: cfg.Max}
			for i, c := range tc.samples {
				if got, _ := g.observe(c); got != tc.want[i] {
					t.Fatalf("sample %d (%.2f cores): %d Ps, want %d", i, c, got, tc.want[i])
				}
			}
		})
	}
}

// Run samples the CPU clock it is given, sets the Ps it decides, and gives
// the process all of them back when it stops.
func TestRun(t *testing.T) {
	var cpu atomic.Int64 // nanoseconds
	var mu sync.Mutex
	var set []int
	last := func() int {
		mu.Lock()
		defer mu.Unlock()
		if len(set) == 0 {
			return 0
		}
		return set[len(set)-1]
	}
	cfg := DefaultConfig()
	cfg.Max, cfg.Interval, cfg.DownAfter = 2, 5*time.Millisecond, 2
	cfg.CPU = func() time.Duration { return time.Duration(cpu.Load()) }
	cfg.SetProcs = func(n int) { mu.Lock(); set = append(set, n); mu.Unlock() }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { New(cfg).Run(ctx); close(done) }()

	// Idle: the clock does not move, so one P.
	retry.Eventually(t, 2*time.Second, func() error { return want(last(), 1) })
	// Busy: a whole core's worth of CPU per wall second, so both Ps.
	stop := make(chan struct{})
	go func() {
		start := time.Now()
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
				cpu.Store(int64(time.Since(start)))
			}
		}
	}()
	retry.Eventually(t, 2*time.Second, func() error { return want(last(), 2) })
	close(stop)
	retry.Eventually(t, 2*time.Second, func() error { return want(last(), 1) })
	cancel()
	<-done
	if got := last(); got != 2 {
		t.Fatalf("after Run returned GOMAXPROCS was left at %d, want Max 2", got)
	}
}

func want(got, n int) error {
	if got != n {
		return fmt.Errorf("GOMAXPROCS %d, want %d", got, n)
	}
	return nil
}

// Behind on one P brings all Ps back at once, when the wait is long enough;
// the samples then take them down again as before.
func TestBehind(t *testing.T) {
	var mu sync.Mutex
	procs := 0
	get := func() int { mu.Lock(); defer mu.Unlock(); return procs }
	cfg := DefaultConfig()
	// DownAfter: 100 ms idle before one P, far longer than between Behind
	// and the check after it.
	cfg.Max, cfg.Interval, cfg.DownAfter = 2, 5*time.Millisecond, 20
	cfg.CPU = func() time.Duration { return 0 } // idle
	cfg.SetProcs = func(n int) { mu.Lock(); procs = n; mu.Unlock() }
	g := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { g.Run(ctx); close(done) }()
	for range 3 {
		retry.Eventually(t, 2*time.Second, func() error { return want(get(), 1) })
		g.Behind(cfg.BehindAfter - time.Microsecond)
		if got := get(); got != 1 {
			t.Fatalf("a wait under BehindAfter set %d Ps, want 1", got)
		}
		g.Behind(cfg.BehindAfter)
		// Not eventually: Behind sets them before it returns. (The idle
		// samples may have taken them down again since, but not within
		// DownAfter intervals.)
		if got := get(); got != 2 {
			t.Fatalf("a wait of BehindAfter on one P left %d Ps, want 2", got)
		}
	}
	cancel()
	<-done
	if got := get(); got != 2 {
		t.Fatalf("after Run returned GOMAXPROCS was left at %d, want Max 2", got)
	}
}
