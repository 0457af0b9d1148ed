package proxy

import (
	"testing"
	"time"
)

// The call that rotates a generation is made on the hot path, under the
// lock every REGISTER with credentials takes: it must not cost in
// proportion to what the generation held. b.N rotations of a generation
// holding 512,000 keys, what 16,000 REGISTER-auth/s leave in Timer J.
func BenchmarkRecentRotation(b *testing.B) {
	const held = 512_000
	c := newRecent[reply](time.Minute)
	for b.Loop() {
		b.StopTimer()
		for k := range uint64(held) {
			c.cur[k*0x9e3779b97f4a7c15] = reply{}
		}
		c.rotated = time.Now().Add(-c.span)
		b.StartTimer()
		c.reserve(1, reply{})
	}
}

// Keys are remembered for at least a span and forgotten after two.
func TestRecentGenerations(t *testing.T) {
	c := newRecent[int](time.Minute)
	if _, seen := c.reserve(1, 10); seen {
		t.Fatal("key 1 seen before it was reserved")
	}
	c.rotated = c.rotated.Add(-time.Minute) // a span later: 1 is in the older generation
	if v, seen := c.reserve(1, 11); !seen || v != 10 {
		t.Fatalf("after one span: reserve(1) = %d, %v; want 10, true", v, seen)
	}
	c.put(2, 20)
	c.rotated = c.rotated.Add(-time.Minute) // two spans: 1 is forgotten, 2 is older
	if !c.seen(2) || c.seen(1) {
		t.Fatalf("after two spans: seen(2) = %v, seen(1) = %v; want true, false", c.seen(2), c.seen(1))
	}
	c.rotated = c.rotated.Add(-2 * time.Minute) // idle for two spans: all forgotten
	if c.seen(2) {
		t.Fatal("after an idle spell of two spans: 2 still seen")
	}
}
