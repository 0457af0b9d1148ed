package ring

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

func nodes(n int, dcs ...string) []Node {
	if len(dcs) == 0 {
		dcs = []string{"dc1"}
	}
	out := make([]Node, n)
	for i := range out {
		out[i] = Node{Name: fmt.Sprintf("n%02d", i+1), Datacenter: dcs[i%len(dcs)]}
	}
	return out
}

func TestSameOwnersWhateverTheOrder(t *testing.T) {
	ns := nodes(7)
	shuffled := append([]Node(nil), ns...)
	rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	a, b := New(ns, 0), New(shuffled, 0)
	for i := 0; i < 1000; i++ {
		key := fmt.Sprintf("sip:user%d@example.test", i)
		oa, _ := a.Owner(key)
		ob, _ := b.Owner(key)
		if oa != ob {
			t.Fatalf("key %s: owner %v on one ring, %v on the other", key, oa, ob)
		}
	}
}

func TestLoadIsBounded(t *testing.T) {
	r := New(nodes(10), 0)
	total := 0
	limit := int(float64(r.Partitions())/10*load) + 1
	for _, n := range r.Nodes() {
		l := r.Load(n.Name)
		if l == 0 || l > limit {
			t.Errorf("%s owns %d partitions, want 1..%d", n.Name, l, limit)
		}
		total += l
	}
	if total != r.Partitions() {
		t.Fatalf("partitions owned add up to %d, want %d", total, r.Partitions())
	}
}

// movedFraction is the share of partitions whose owner changes when an
// eleventh node joins ten.
func movedFraction(before, after *Ring) float64 {
	moved := 0
	for p := 0; p < before.Partitions(); p++ {
		a, _ := before.PartitionOwner(p)
		b, _ := after.PartitionOwner(p)
		if a != b {
			moved++
		}
	}
	return float64(moved) / float64(before.Partitions())
}

func TestJoinMovesAboutOneNth(t *testing.T) {
	ten := nodes(11)[:10]
	frac := movedFraction(New(ten, 0), New(nodes(11), 0))
	t.Logf("11th node moved %.3f of partitions (1/11 = %.3f)", frac, 1.0/11)
	// Bounded-load placement moves a little more than the ideal 1/11.
	if frac < 0.5/11 || frac > 2.5/11 {
		t.Fatalf("an 11th node moved %.3f of the partitions, want about 1/11", frac)
	}
}

func TestReplicasPreferOtherDatacenters(t *testing.T) {
	r := New(nodes(6, "dc1", "dc2", "dc3"), 0)
	for p := 0; p < r.Partitions(); p++ {
		reps := r.PartitionReplicas(p, 3)
		if len(reps) != 3 {
			t.Fatalf("partition %d: %d replicas, want 3", p, len(reps))
		}
		owner, _ := r.PartitionOwner(p)
		if reps[0] != owner {
			t.Fatalf("partition %d: first replica %v is not the owner %v", p, reps[0], owner)
		}
		seen := map[string]bool{}
		for _, n := range reps {
			if seen[n.Datacenter] {
				t.Fatalf("partition %d: replicas %v repeat datacenter %s while another is free", p, reps, n.Datacenter)
			}
			seen[n.Datacenter] = true
		}
	}
	// More replicas than datacenters: distinct nodes, all of them when n > len.
	if got := r.Replicas("k", 10); len(got) != 6 {
		t.Fatalf("Replicas(k, 10) on 6 nodes gave %d", len(got))
	}
}

func TestEmptyRing(t *testing.T) {
	r := New(nil, 0)
	if _, ok := r.Owner("k"); ok {
		t.Fatal("an empty ring has an owner")
	}
	if got := r.Replicas("k", 2); len(got) != 0 {
		t.Fatalf("empty ring replicas %v", got)
	}
}

func BenchmarkOwner(b *testing.B) {
	r := New(nodes(10), 0)
	keys := make([]string, 1024)
	for i := range keys {
		keys[i] = fmt.Sprintf("sip:user%d@example.test", i)
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r.Owner(keys[i&1023])
	}
}

func BenchmarkReplicas2(b *testing.B) {
	r := New(nodes(10, "dc1", "dc2"), 0)
	for i := 0; b.Loop(); i++ {
		r.Replicas("sip:alice@example.test", 2)
	}
}

func BenchmarkJoinMovement(b *testing.B) {
	ten, eleven := nodes(11)[:10], nodes(11)
	var frac float64
	for b.Loop() {
		frac = movedFraction(New(ten, 0), New(eleven, 0))
	}
	b.ReportMetric(frac, "moved-fraction")
}

// Replica pairs spread over the nodes: with 5 nodes and R=2 every pair of
// nodes holds some partitions together, so a dead node's data is re-copied
// from and to every survivor, not two neighbours.
func TestReplicaPairsSpread(t *testing.T) {
	r := New(nodes(5), 0)
	pairs := map[[2]string]int{}
	for p := 0; p < r.Partitions(); p++ {
		reps := r.PartitionReplicas(p, 2)
		a, b := reps[0].Name, reps[1].Name
		if a > b {
			a, b = b, a
		}
		pairs[[2]string{a, b}]++
	}
	if len(pairs) != 10 {
		t.Fatalf("%d of 10 node pairs hold partitions together: %v", len(pairs), pairs)
	}
}
