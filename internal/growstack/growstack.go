// Package growstack grows a new goroutine's stack in one step, before the
// deep call paths that would otherwise grow it several times.
//
// A goroutine starts with a small stack (2 KiB, or the runtime's running
// average) that doubles whenever a call does not fit, and each doubling
// copies the stack and walks every frame on it to fix up its pointers.
// sipgo runs each request in a goroutine of its own, and the proxy's path
// from there to the forwarded datagram (routing, location, the client
// transaction, the write) takes about 10 KiB of frames: at 2,400 calls/s
// `runtime.morestack` was 5.9% of a node's CPU (perf), most of it walking
// the frames of the later doublings. One frame of Size at the top of the
// goroutine, where the stack is still shallow, makes the runtime size the
// stack for it at once, with one copy of a few frames: 2.4-3.1% after it,
// in the same runs. The same trick as CockroachDB's util/growstack.
//
// It owns only that and imports nothing.
package growstack

// Size is the frame Grow puts on the stack. A stack is a power of two, and
// with a shallow caller, Size plus the runtime's guard fits in 16 KiB: the
// largest size the runtime still takes from its per-P stack cache.
const Size = 12 << 10

// Grow makes the calling goroutine's stack hold at least Size more bytes
// than its caller uses. Call it first thing in a goroutine whose calls go
// deep; when the stack is already that big it costs two calls (the frame
// is sized, never written).
//
//go:noinline
func Grow() { reserve(false) }

// reserve's frame holds Size bytes, which the runtime makes room for on
// entry; only touch writes them, so the frame is sized but not zeroed.
//
//go:noinline
func reserve(touch bool) {
	if touch {
		var frame [Size]byte
		use(&frame)
	}
}

// use keeps frame, and so reserve's stack frame, from being optimized away.
//
//go:noinline
func use(*[Size]byte) {}
