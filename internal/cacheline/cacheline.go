// Package cacheline reads memory ahead of its use, so that the cache
// misses of data spread over many allocations overlap instead of coming
// one after another.
//
// A loop that decodes one value after another waits for each value's
// first read to come from memory before it gets to the next value's: the
// misses are serialized by the work between them. A loop that does
// nothing but read one octet of every cache line issues the reads back to
// back, and the processor has them in flight together; the decoding that
// follows then finds the lines in the cache. It pays only where the data
// is seldom in the cache: a registrar's bindings, read again on each
// REGISTER of their AOR among thousands of AORs (roles/registrar,
// overlay/store).
//
// It imports nothing of sipmesh.
package cacheline

import "unsafe"

// Size is the cache line size assumed: 64 octets on x86-64 and most arm64.
const Size = 64

// Touch reads one octet of each cache line of b. It is not inlined, so
// that its reads are not optimized away when the caller ignores the
// result, which is the XOR of the octets read.
//
//go:noinline
func Touch(b []byte) byte {
	var x byte
	for i := 0; i < len(b); i += Size {
		x ^= b[i]
	}
	return x
}

// TouchSlice is Touch for the backing array of s (its len elements).
func TouchSlice[T any](s []T) byte {
	n := len(s) * int(unsafe.Sizeof(*new(T)))
	return Touch(unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), n))
}

// TouchString is Touch for the octets of s.
func TouchString(s string) byte {
	return Touch(unsafe.Slice(unsafe.StringData(s), len(s)))
}
