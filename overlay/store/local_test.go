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

// A write changes a key's records in place only while nobody holds them:
// a slice handed out by getLive or snapshot must keep what it had, whatever
// the writes after it, and reading with eachLive leaves the next write in
// place.
func TestApplyLeavesHandedOutRecords(t *testing.T) {
	l := newLocal(1, DefaultMerger, time.Minute)
	rng := rand.New(rand.NewPCG(3, 4))
	now := time.Unix(1_800_000_000, 0)
	const key = "alice@example.test"
	type held struct {
		recs []Record
		want string
	}
	var out []held
	var version uint64
	for step := range 1000 {
		if len(out) > 16 {
			out = out[len(out)-16:] // the latest few: each is checked after every write
		}
		switch rng.IntN(4) {
		case 0:
			recs := l.getLive(0, key, now)
			out = append(out, held{recs, fmt.Sprint(recs)})
		case 1:
			for _, s := range l.snapshot(0, now) {
				out = append(out, held{s.recs, fmt.Sprint(s.recs)})
			}
		case 2:
			l.eachLive(0, key, now, func(Record) {})
		}
		version++
		r := Record{ID: fmt.Sprintf("c%d", rng.IntN(8)), Value: []byte(fmt.Sprintf("v%d", step)), Version: version, Writer: "n1",
			Expires: now.Add(time.Duration(1+rng.IntN(30)) * time.Second), Deleted: rng.IntN(6) == 0}
		now = now.Add(time.Duration(rng.IntN(500)) * time.Millisecond)
		l.apply(0, key, []Record{r}, now)
		for i, h := range out {
			if got := fmt.Sprint(h.recs); got != h.want {
				t.Fatalf("step %d: records handed out (%d) changed by a write:\n got %s\nwant %s", step, i, got, h.want)
			}
		}
	}

	// In place after eachLive, a new slice after getLive.
	write := func(v string) {
		version++
		l.apply(0, key, []Record{{ID: "c0", Value: []byte(v), Version: version, Writer: "n1", Expires: now.Add(time.Hour)}}, now)
	}
	write("x")
	l.eachLive(0, key, now, func(Record) {})
	before := &l.parts[0].keys[key].recs[0]
	write("y")
	if after := &l.parts[0].keys[key].recs[0]; after != before {
		t.Errorf("a write after eachLive copied the records")
	}
	l.getLive(0, key, now)
	write("z")
	if after := &l.parts[0].keys[key].recs[0]; after == before {
		t.Errorf("a write after getLive changed the records handed out in place")
	}
}
