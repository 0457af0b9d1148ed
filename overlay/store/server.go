package store

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
)

// Registry serves the replica protocol (meshpb.Store) of every store of a
// node, dispatching on the role each request names.
type Registry struct {
	meshpb.UnimplementedStoreServer

	mu     sync.RWMutex
	stores map[string]*Store
}

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{stores: map[string]*Store{}} }

// Register registers the registry's gRPC service on a server (an
// *rpc.Server); call it before the server serves.
func (g *Registry) Register(s grpc.ServiceRegistrar) { meshpb.RegisterStoreServer(s, g) }

// Add makes a store reachable by its peers.
func (g *Registry) Add(s *Store) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.stores[s.cfg.Role]; ok {
		return fmt.Errorf("store: registry: a store for role %q is already registered", s.cfg.Role)
	}
	g.stores[s.cfg.Role] = s
	return nil
}

// Remove makes the store of role unreachable.
func (g *Registry) Remove(role string) {
	g.mu.Lock()
	delete(g.stores, role)
	g.mu.Unlock()
}

// Store returns the store of role.
func (g *Registry) Store(role string) (*Store, bool) {
	g.mu.RLock()
	defer g.mu.RUnlock()
	s, ok := g.stores[role]
	return s, ok
}

func (g *Registry) lookup(role string) (*Store, error) {
	if s, ok := g.Store(role); ok {
		return s, nil
	}
	// Unavailable, not NotFound: a node that runs the role but has not
	// started its store yet is as good as unreachable for the caller.
	return nil, status.Errorf(codes.Unavailable, "store: this node has no store for role %q", role)
}

// Put merges the entries into the local copy.
func (g *Registry) Put(ctx context.Context, req *meshpb.PutRequest) (*meshpb.PutResponse, error) {
	s, err := g.lookup(req.GetRole())
	if err != nil {
		return nil, err
	}
	if req.GetLeaving() {
		if peer, ok := rpc.PeerName(ctx); ok {
			s.markLeaving(peer)
		}
	}
	now := s.cfg.Now()
	r := s.ring()
	for _, e := range req.GetEntries() {
		recs := recordsFromPB(e.GetRecords())
		for _, rec := range recs {
			s.clock.observe(rec.Version)
		}
		s.local.apply(r.Partition(e.GetKey()), e.GetKey(), recs, now)
	}
	return &meshpb.PutResponse{}, nil
}

// Get returns the local copy of the keys asked for.
func (g *Registry) Get(_ context.Context, req *meshpb.GetRequest) (*meshpb.GetResponse, error) {
	s, err := g.lookup(req.GetRole())
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	r := s.ring()
	resp := &meshpb.GetResponse{}
	for _, k := range req.GetKeys() {
		if recs := s.local.get(r.Partition(k), k, now); len(recs) > 0 {
			resp.Entries = append(resp.Entries, entryToPB(k, recs))
		}
	}
	return resp, nil
}

// Digest returns the partitions whose digests differ from the caller's.
func (g *Registry) Digest(_ context.Context, req *meshpb.DigestRequest) (*meshpb.DigestResponse, error) {
	s, err := g.lookup(req.GetRole())
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	resp := &meshpb.DigestResponse{}
	for _, pd := range req.GetPartitions() {
		p := int(pd.GetPartition())
		if p >= len(s.local.parts) {
			return nil, status.Errorf(codes.InvalidArgument, "store: partition %d out of range (this node has %d)", p, len(s.local.parts))
		}
		if s.local.partitionDigest(p, now) != pd.GetDigest() {
			resp.Mismatched = append(resp.Mismatched, pd.GetPartition())
		}
	}
	return resp, nil
}

// Sync returns the local keys of a partition the caller lacks or has
// differently, and the caller's keys this node lacks or has differently.
func (g *Registry) Sync(_ context.Context, req *meshpb.SyncRequest) (*meshpb.SyncResponse, error) {
	s, err := g.lookup(req.GetRole())
	if err != nil {
		return nil, err
	}
	p := int(req.GetPartition())
	if p >= len(s.local.parts) {
		return nil, status.Errorf(codes.InvalidArgument, "store: partition %d out of range (this node has %d)", p, len(s.local.parts))
	}
	now := s.cfg.Now()
	mine := s.local.keyDigests(p, now)
	resp := &meshpb.SyncResponse{}
	theirs := make(map[string]uint64, len(req.GetKeys()))
	for _, kd := range req.GetKeys() {
		theirs[kd.GetKey()] = kd.GetDigest()
		if d, ok := mine[kd.GetKey()]; !ok || d != kd.GetDigest() {
			resp.Want = append(resp.Want, kd.GetKey())
		}
	}
	for k, d := range mine {
		if td, ok := theirs[k]; ok && td == d {
			continue
		}
		if recs := s.local.get(p, k, now); len(recs) > 0 {
			resp.Entries = append(resp.Entries, entryToPB(k, recs))
		}
	}
	return resp, nil
}

// Stats reports what this node holds.
func (g *Registry) Stats(_ context.Context, req *meshpb.StatsRequest) (*meshpb.StatsResponse, error) {
	s, err := g.lookup(req.GetRole())
	if err != nil {
		return nil, err
	}
	st := s.Stats()
	return &meshpb.StatsResponse{Keys: uint64(st.Keys), Records: uint64(st.Records), Tombstones: uint64(st.Tombstones)}, nil
}
