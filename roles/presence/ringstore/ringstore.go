// Package ringstore adapts the replicated store of overlay/store to the
// presence agent's Store interface, and gives the presence store's merge
// rule ([Merger], presence.Newer).
//
// The node wires it as:
//
//	cfg := store.DefaultConfig("presence")
//	cfg.Merger = ringstore.Merger
//	st, _ := store.New(cfg, ov, rpcClient)
//	agent, _ := presence.New(ringstore.New(st, nodeName), sender, ...)
//
// It is the only part of roles/presence that imports overlay.
package ringstore

import (
	"context"

	"github.com/sipmesh/sipmesh/overlay/store"
	"github.com/sipmesh/sipmesh/roles/presence"
)

// Merger is the presence store's merge rule: presence.Newer.
var Merger store.Merger = store.MergerFunc(func(a, b store.Record) bool {
	return presence.Newer(from(a), from(b))
})

// Store is a presence.Store over a *store.Store.
type Store struct {
	s    *store.Store
	self string
}

// New adapts s; self is this node's name (the ring's name for it).
func New(s *store.Store, self string) *Store { return &Store{s: s, self: self} }

// Put implements presence.Store.
func (r *Store) Put(ctx context.Context, key string, recs ...presence.Record) error {
	out := make([]store.Record, len(recs))
	for i, x := range recs {
		out[i] = store.Record{ID: x.ID, Value: x.Value, Expires: x.Expires, Deleted: x.Deleted}
	}
	return r.s.Put(ctx, key, out...)
}

// Get implements presence.Store.
func (r *Store) Get(ctx context.Context, key string) ([]presence.Record, error) {
	recs, err := r.s.Get(ctx, key)
	if err != nil {
		return nil, err
	}
	return Records(recs), nil
}

// Owned implements presence.Store: the keys held here whose first
// replica (the owner) is this node.
func (r *Store) Owned() []string {
	var out []string
	for _, k := range r.s.Keys() {
		if reps := r.s.Replicas(k); len(reps) > 0 && reps[0] == r.self {
			out = append(out, k)
		}
	}
	return out
}

// Local implements presence.Store.
func (r *Store) Local(key string) []presence.Record { return Records(r.s.Local(key)) }

// Owner names the presence-ring owner of key ("" when the ring is
// empty): the node the edge should hand the key's PUBLISH and SUBSCRIBE
// requests to.
func (r *Store) Owner(key string) string {
	if reps := r.s.Replicas(key); len(reps) > 0 {
		return reps[0]
	}
	return ""
}

// Records converts store records to the presence agent's.
func Records(recs []store.Record) []presence.Record {
	out := make([]presence.Record, len(recs))
	for i, x := range recs {
		out[i] = from(x)
	}
	return out
}

func from(x store.Record) presence.Record {
	return presence.Record{ID: x.ID, Value: x.Value, Version: x.Version, Expires: x.Expires, Deleted: x.Deleted}
}
