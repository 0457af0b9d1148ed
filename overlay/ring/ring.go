package ring

import (
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// DefaultPartitions is the number of partitions keys are spread over. A
// prime, as buraksezer/consistent recommends; 271 gives an even spread for
// up to ~100 nodes at Load 1.25 and keeps per-partition digests small.
// Every node of a cluster must use the same value.
const DefaultPartitions = 271

const (
	replicationFactor = 40   // virtual nodes per member
	load              = 1.25 // max partitions per member = avg*load (must be >= 1)
)

// Node is one member of a ring.
type Node struct {
	Name       string
	Datacenter string
}

func (n Node) String() string { return n.Name }

type hasher struct{}

func (hasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }

// Ring is an immutable placement of partitions on nodes. The zero of a ring
// (no nodes) answers every lookup with nothing.
type Ring struct {
	c          *consistent.Consistent
	nodes      []Node // sorted by name
	byName     map[string]Node
	partitions int
	owners     []string   // partition -> owner name
	order      [][]string // partition -> every node in ring order, owner first
	load       map[string]int
	// replicas caches PartitionReplicas: n -> partition -> holders. Every
	// read and write of a store asks, and the answer never changes.
	replicas sync.Map
}

// New builds a ring over nodes. partitions <= 0 means DefaultPartitions.
func New(nodes []Node, partitions int) *Ring {
	if partitions <= 0 {
		partitions = DefaultPartitions
	}
	sorted := slices.Clone(nodes)
	slices.SortFunc(sorted, func(a, b Node) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	sorted = slices.CompactFunc(sorted, func(a, b Node) bool { return a.Name == b.Name })
	r := &Ring{nodes: sorted, byName: map[string]Node{}, partitions: partitions, load: map[string]int{}}
	if len(sorted) == 0 {
		return r
	}
	members := make([]consistent.Member, len(sorted))
	for i, n := range sorted {
		members[i] = n
		r.byName[n.Name] = n
	}
	r.c = consistent.New(members, consistent.Config{
		Hasher:            hasher{},
		PartitionCount:    partitions,
		ReplicationFactor: replicationFactor,
		Load:              load,
	})
	r.owners = make([]string, partitions)
	r.order = make([][]string, partitions)
	for p := 0; p < partitions; p++ {
		name := r.c.GetPartitionOwner(p).String()
		r.owners[p] = name
		r.load[name]++
		// Replicas follow the owner in an order of their own per partition
		// (rendezvous hashing on partition and name): consistent's
		// closest-N walks from the owner's own hash, which would give every
		// owner one fixed successor and put a dead node's re-copying on two
		// neighbours only.
		order := make([]string, 0, len(sorted))
		for _, nd := range sorted {
			if nd.Name != name {
				order = append(order, nd.Name)
			}
		}
		slices.SortFunc(order, func(a, b string) int {
			ha, hb := rendezvous(p, a), rendezvous(p, b)
			switch {
			case ha > hb:
				return -1
			case ha < hb:
				return 1
			}
			return strings.Compare(a, b)
		})
		order = append([]string{name}, order...)
		r.order[p] = order
	}
	return r
}

// Partitions is the number of partitions.
func (r *Ring) Partitions() int { return r.partitions }

// Nodes lists the ring's nodes sorted by name.
func (r *Ring) Nodes() []Node { return slices.Clone(r.nodes) }

// Len is the number of nodes.
func (r *Ring) Len() int { return len(r.nodes) }

// Has reports whether name is on the ring.
func (r *Ring) Has(name string) bool { _, ok := r.byName[name]; return ok }

// Load is the number of partitions name owns.
func (r *Ring) Load(name string) int { return r.load[name] }

// Partition returns the partition of key; it does not depend on the nodes.
func (r *Ring) Partition(key string) int {
	return int(xxhash.Sum64String(key) % uint64(r.partitions))
}

// Owner returns the node that owns key.
func (r *Ring) Owner(key string) (Node, bool) {
	return r.PartitionOwner(r.Partition(key))
}

// PartitionOwner returns the node that owns partition p.
func (r *Ring) PartitionOwner(p int) (Node, bool) {
	if r.c == nil || p < 0 || p >= r.partitions {
		return Node{}, false
	}
	return r.byName[r.owners[p]], true
}

// Replicas returns up to n holders of key: the owner first, then one node
// of each datacenter not yet covered, then the rest, in an order of the
// partition's own (rendezvous hashing) so that replica sets spread evenly.
func (r *Ring) Replicas(key string, n int) []Node {
	return r.PartitionReplicas(r.Partition(key), n)
}

// PartitionReplicas is Replicas for a partition. The caller must not
// modify the slice's elements.
func (r *Ring) PartitionReplicas(p, n int) []Node {
	if r.c == nil || n <= 0 || p < 0 || p >= r.partitions {
		return nil
	}
	n = min(n, len(r.nodes))
	if all, ok := r.replicas.Load(n); ok {
		return slices.Clip(all.([][]Node)[p])
	}
	all := make([][]Node, r.partitions)
	for i := range all {
		all[i] = r.placeReplicas(i, n)
	}
	r.replicas.Store(n, all)
	return slices.Clip(all[p])
}

// placeReplicas computes n holders of partition p.
func (r *Ring) placeReplicas(p, n int) []Node {
	out := make([]Node, 0, n)
	taken := make(map[string]bool, n)
	dcs := make(map[string]bool, n)
	for _, name := range r.order[p] {
		if len(out) == n {
			return out
		}
		if nd := r.byName[name]; !dcs[nd.Datacenter] {
			out = append(out, nd)
			taken[name] = true
			dcs[nd.Datacenter] = true
		}
	}
	for _, name := range r.order[p] {
		if len(out) == n {
			break
		}
		if !taken[name] {
			out = append(out, r.byName[name])
		}
	}
	return out
}

// rendezvous scores a node for a partition's replica order.
func rendezvous(p int, name string) uint64 {
	return xxhash.Sum64String(strconv.Itoa(p) + "/" + name)
}
