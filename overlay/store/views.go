package store

import (
	"slices"
	"sync"
	"time"

	"github.com/sipmesh/sipmesh/overlay/ring"
)

// views tracks the ring a store places keys on: the overlay's ring less
// the nodes known to be leaving, and, for HandoffGrace after it changed,
// the previous one, whose holders reads ask when the new holders have
// nothing yet (handoff still running).
type views struct {
	mu        sync.Mutex
	base      *ring.Ring // the overlay's ring cur was derived from
	cur       *ring.Ring
	prev      *ring.Ring
	prevUntil time.Time
	leaving   map[string]time.Time // node -> until when it counts as gone
}

// rings returns the current ring and, within the grace period after a
// change, the previous one (else nil).
func (s *Store) rings() (cur, prev *ring.Ring) {
	base := s.m.Ring(s.cfg.Role)
	v := &s.views
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.cur != nil && base == v.base && v.prev == nil && len(v.leaving) == 0 {
		// The steady state, several times per request: nothing expires,
		// so no clock read (a vDSO call that is dear on a VM).
		return v.cur, nil
	}
	now := s.cfg.Now()
	stale := v.cur == nil || base != v.base
	for n, until := range v.leaving {
		// Forgotten once gone from the overlay's ring, or after a while if
		// the node never left after all.
		if !base.Has(n) || !now.Before(until) {
			delete(v.leaving, n)
			stale = true
		}
	}
	if stale {
		next := base
		if len(v.leaving) > 0 {
			var nodes []ring.Node
			for _, n := range base.Nodes() {
				if _, gone := v.leaving[n.Name]; !gone {
					nodes = append(nodes, n)
				}
			}
			next = ring.New(nodes, base.Partitions())
		}
		// An empty ring (before this node saw itself join) had no
		// holders to hand off from.
		if v.cur != nil && v.cur.Len() > 0 && !sameNodes(v.cur, next) {
			v.prev, v.prevUntil = v.cur, now.Add(s.cfg.HandoffGrace)
		}
		v.base, v.cur = base, next
	}
	if v.prev != nil && !now.Before(v.prevUntil) {
		v.prev = nil // its grace is over
	}
	return v.cur, v.prev
}

func (s *Store) ring() *ring.Ring {
	r, _ := s.rings()
	return r
}

// markLeaving places keys without node from now on: it said it is
// handing off before leaving.
func (s *Store) markLeaving(node string) {
	v := &s.views
	v.mu.Lock()
	if v.leaving == nil {
		v.leaving = map[string]time.Time{}
	}
	if _, ok := v.leaving[node]; !ok {
		s.log.Info("store: node is leaving; placing keys without it", "node", node)
	}
	v.leaving[node] = s.cfg.Now().Add(s.cfg.LeaveGrace)
	v.base = nil // derive again
	v.mu.Unlock()
}

func sameNodes(a, b *ring.Ring) bool {
	if a == b {
		return true
	}
	if a == nil || b == nil {
		return false
	}
	return slices.Equal(a.Nodes(), b.Nodes()) && a.Partitions() == b.Partitions()
}

// Alone reports whether this node holds every key by itself: it is the only
// node of the ring and none is being handed off from, so no read or write
// waits on a peer.
func (s *Store) Alone() bool {
	cur, prev := s.rings()
	only := func(r *ring.Ring) bool { return r.Len() == 1 && r.Has(s.self) }
	return only(cur) && (prev == nil || only(prev))
}
