package store

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// apply keeps a key's digest record by record; whatever the writes, it must
// be what hashing the key's records from scratch gives, and a partition's
// digest the XOR of its keys', as a holder's peers compute them.
func TestApplyKeepsDigests(t *testing.T) {
	l := newLocal(1, DefaultMerger, time.Minute)
	rng := rand.New(rand.NewPCG(1, 2))
	now := time.Unix(1_800_000_000, 0)
	keys := []string{"alice@example.test", "bob@example.test", "carol@example.test"}
	var version uint64
	for step := range 3000 {
		key := keys[rng.IntN(len(keys))]
		var in []Record
		for range 1 + rng.IntN(3) {
			version++
			r := Record{ID: fmt.Sprintf("c%d", rng.IntN(6)), Value: []byte(fmt.Sprintf("v%d", rng.IntN(4))),
				Version: version, Writer: "n1", Expires: now.Add(time.Duration(rng.IntN(30)) * time.Second)}
			switch rng.IntN(5) {
			case 0:
				r.Deleted = true
			case 1:
				r.Version -= uint64(rng.IntN(10)) // an older version, which loses
			}
			in = append(in, r)
		}
		now = now.Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
		l.apply(0, key, in, now)
		pt := l.parts[0]
		var part uint64
		for k, e := range pt.keys {
			if want := keyDigest(k, e.recs); e.digest != want {
				t.Fatalf("step %d: %s digest %x, its records hash to %x", step, k, e.digest, want)
			}
			part ^= e.digest
		}
		if pt.digest != part {
			t.Fatalf("step %d: partition digest %x, its keys' XOR %x", step, pt.digest, part)
		}
	}
}
