package growstack

import (
	"testing"
	"unsafe"
)

// deep calls itself n times with a frame of about 1 KiB each: a call path
// like the proxy's, deep enough to grow a fresh goroutine's stack several
// times.
//
//go:noinline
func deep(n int) byte {
	var pad [1 << 10]byte
	pad[n%len(pad)] = byte(n)
	if n == 0 {
		return pad[0]
	}
	return deep(n-1) + pad[n%len(pad)]
}

// stackMoved reports whether the goroutine's stack was moved (copied to a
// bigger one) while deep ran in a new goroutine, after Grow when grow: the
// address of a local, kept as a number the runtime does not adjust, changes
// when the stack is copied.
func stackMoved(grow bool) bool {
	moved := make(chan bool)
	go func() {
		if grow {
			Grow()
		}
		var marker byte
		before := uintptr(unsafe.Pointer(&marker))
		deep(8) // ~9 KiB of frames, within Size
		moved <- uintptr(unsafe.Pointer(&marker)) != before
	}()
	return <-moved
}

func TestGrow(t *testing.T) {
	for _, tc := range []struct {
		grow, wantMoved bool
	}{
		{grow: false, wantMoved: true}, // the premise: the calls outgrow a new stack
		{grow: true, wantMoved: false}, // after Grow they fit
	} {
		if got := stackMoved(tc.grow); got != tc.wantMoved {
			t.Errorf("grow %v: stack moved %v, want %v", tc.grow, got, tc.wantMoved)
		}
	}
}

func BenchmarkDeepGoroutine(b *testing.B) {
	for _, grow := range []bool{false, true} {
		name := "plain"
		if grow {
			name = "grow"
		}
		b.Run(name, func(b *testing.B) {
			done := make(chan struct{})
			for b.Loop() {
				go func() {
					if grow {
						Grow()
					}
					deep(8)
					done <- struct{}{}
				}()
				<-done
			}
		})
	}
}
