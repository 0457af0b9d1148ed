package relay

import "testing"

func TestSeqTracker(t *testing.T) {
	type pkt struct {
		ssrc uint32
		seq  uint16
	}
	seqs := func(ssrc uint32, s ...uint16) []pkt {
		out := make([]pkt, len(s))
		for i, v := range s {
			out[i] = pkt{ssrc, v}
		}
		return out
	}
	for _, tc := range []struct {
		name               string
		pkts               []pkt
		expected, received uint64
	}{
		{"in order", seqs(1, 10, 11, 12, 13), 4, 4},
		{"gap", seqs(1, 10, 11, 14, 15), 6, 4},
		{"wrap", seqs(1, 65534, 65535, 0, 1), 4, 4},
		{"wrap with loss", seqs(1, 65533, 65535, 2), 6, 3},
		{"reordered", seqs(1, 1, 3, 2, 4), 4, 4},
		{"duplicate", seqs(1, 1, 2, 2, 3), 3, 4},
		{"late packet before base", seqs(1, 100, 101, 99), 2, 3},
		// A jump beyond MAX_DROPOUT: one stray packet is ignored ...
		{"stray", seqs(1, 1, 2, 30000, 3), 3, 3},
		// ... two in sequence restart the source (A.1 "bad_seq").
		{"restart", seqs(1, 1, 2, 30000, 30001, 30002), 2 + 2, 4},
		{"new ssrc adds", append(seqs(1, 1, 3), seqs(2, 500, 502)...), 3 + 3, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tr seqTracker
			for _, p := range tc.pkts {
				tr.update(p.ssrc, p.seq)
			}
			e, r := tr.counts()
			if e != tc.expected || r != tc.received {
				t.Fatalf("expected %d received %d, want %d %d", e, r, tc.expected, tc.received)
			}
			var st legStats
			st.publish(&tr)
			want := uint64(0)
			if tc.expected > tc.received {
				want = tc.expected - tc.received
			}
			if st.lost() != want {
				t.Fatalf("lost %d, want %d", st.lost(), want)
			}
		})
	}
}

func FuzzSeqTracker(f *testing.F) {
	f.Add([]byte{0, 1, 0, 2, 0xff, 0xff, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var tr seqTracker
		var n uint64
		for i := 0; i+1 < len(b); i += 2 {
			tr.update(uint32(b[i]>>7), uint16(b[i])<<8|uint16(b[i+1]))
			n++
		}
		_, r := tr.counts()
		if r > n {
			t.Fatalf("received %d of %d packets", r, n)
		}
	})
}
