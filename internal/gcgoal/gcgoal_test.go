package gcgoal

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/internal/retry"
)

func TestPercent(t *testing.T) {
	cfg := Config{Budget: 128 << 20, MinPercent: 200}
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 3100},         // nothing marked yet: the runtime's floor, 4 MiB x 32
		{1 << 20, 3100},   // under the floor: counted as the floor
		{4 << 20, 3100},   // the floor
		{5 << 20, 2460},   // goal 25.6 x 5 MiB
		{16 << 20, 700},   // goal 8 x 16 MiB = the budget
		{32 << 20, 300},   // goal 4 x 32 MiB
		{64 << 20, 200},   // half the budget: the minimum
		{100 << 20, 200},  // beyond: the minimum, as plain GOGC
		{4 << 30, 200},    // far beyond
		{12 << 20, 966},   // not a divisor: rounded down, under the budget
		{130 << 20, 200},  // over the budget
		{4<<20 + 1, 3099}, // just over the floor
	} {
		if got := cfg.Percent(tc.live); got != tc.want {
			t.Errorf("Percent(%d MiB): %d, want %d", tc.live>>20, got, tc.want)
		}
	}
}

// Run sets GOGC at once, again after a collection that changed it, not
// after one that did not, and leaves MinPercent when it stops.
func TestRun(t *testing.T) {
	var live atomic.Uint64
	live.Store(16 << 20)
	var mu sync.Mutex
	var set []int
	cfg := DefaultConfig()
	cfg.Live = live.Load
	cfg.SetPercent = func(p int) { mu.Lock(); set = append(set, p); mu.Unlock() }
	got := func() string { mu.Lock(); defer mu.Unlock(); return fmt.Sprint(set) }

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { Run(ctx, cfg); close(done) }()
	collect := func(want string) {
		t.Helper()
		retry.Eventually(t, 5*time.Second, func() error {
			runtime.GC()
			if s := got(); s != want {
				return fmt.Errorf("GOGC set to %s, want %s", s, want)
			}
			return nil
		})
	}
	collect("[700]")
	live.Store(64 << 20)
	collect("[700 200]")
	live.Store(66 << 20) // 193%: the minimum, unchanged
	for range 3 {
		runtime.GC()
	}
	live.Store(32 << 20)
	collect("[700 200 300]")
	cancel()
	<-done
	if s := got(); s != "[700 200 300 200]" {
		t.Fatalf("after Run: GOGC set to %s, want the minimum last", s)
	}
}
