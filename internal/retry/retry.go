// Package retry holds the one helper tests use to wait for a condition
// over real sockets and processes: retry with backoff until a deadline,
// never a fixed sleep.
package retry

import (
	"testing"
	"time"
)

// Eventually retries f, backing off from 5 ms to 200 ms, until it returns
// nil, or fails the test with f's last error once timeout has passed.
func Eventually(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 5 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %v", timeout, err)
		}
		time.Sleep(wait)
		wait = min(2*wait, 200*time.Millisecond)
	}
}
