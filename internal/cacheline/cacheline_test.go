package cacheline

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

func TestTouch(t *testing.T) {
	for _, tc := range []struct {
		name string
		b    []byte
		want byte
	}{
		{"nil", nil, 0},
		{"one octet", []byte{7}, 7},
		{"one line", append([]byte{0x0f}, make([]byte, Size-1)...), 0x0f},
		{"two lines and a bit", func() []byte {
			b := make([]byte, 2*Size+1)
			b[0], b[Size], b[2*Size], b[1] = 1, 2, 4, 0x80 // b[1] is not read
			return b
		}(), 1 ^ 2 ^ 4},
	} {
		if got := Touch(tc.b); got != tc.want {
			t.Errorf("%s: Touch = %#x, want %#x", tc.name, got, tc.want)
		}
	}
}

func TestTouchSlice(t *testing.T) {
	s := make([]uint64, 20) // 160 octets: lines at 0, 64, 128
	s[0], s[8], s[16], s[1] = 1, 2, 4, 0xff
	if got := TouchSlice(s); got != 1^2^4 {
		t.Errorf("TouchSlice = %#x, want %#x", got, 1^2^4)
	}
	if got := TouchSlice([]uint64(nil)); got != 0 {
		t.Errorf("TouchSlice(nil) = %#x", got)
	}
}

// BenchmarkDecode decodes the values of groups of 15, each value an
// allocation of its own and the groups far more than the cache holds, as a
// registrar reads an AOR's bindings: with and without touching a group's
// values first.
//
//	go test -run '^$' -bench Decode ./internal/cacheline/
func BenchmarkDecode(b *testing.B) {
	const groups, per = 40_000, 15 // ~100 MB of values
	rng := rand.New(rand.NewPCG(1, 2))
	vals := make([][][]byte, groups)
	for g := range vals {
		vals[g] = make([][]byte, per)
	}
	// Allocated in random order, so that a group's values are scattered.
	for _, i := range rng.Perm(groups * per) {
		v := make([]byte, 160)
		for j := 0; j+binary.MaxVarintLen64 <= len(v); j += 8 {
			binary.PutUvarint(v[j:], uint64(rng.IntN(100)))
		}
		vals[i/per][i%per] = v
	}
	order := rng.Perm(groups)
	decode := func(vs [][]byte) (sum uint64) {
		for _, v := range vs {
			for j := 0; j < len(v); j += 8 {
				x, _ := binary.Uvarint(v[j:])
				sum += x
			}
		}
		return sum
	}
	for _, touch := range []bool{false, true} {
		name := "plain"
		if touch {
			name = "touched"
		}
		b.Run(name, func(b *testing.B) {
			var sum uint64
			for i := 0; b.Loop(); i++ {
				vs := vals[order[i%groups]]
				if touch {
					for _, v := range vs {
						Touch(v)
					}
				}
				sum += decode(vs)
			}
			if sum == 0 {
				b.Fatal("nothing decoded")
			}
		})
	}
}
