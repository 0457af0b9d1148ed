package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sipmesh/sipmesh/overlay/ring"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
)

// run is the store's background loop: a rebalance after every ring change,
// and an anti-entropy round (which also retries failed handoffs) every
// AntiEntropyInterval. One goroutine does both, so they never overlap and a
// burst of ring changes collapses into one rebalance against the latest ring.
func (s *Store) run(events <-chan struct{}, unsubscribe func()) {
	defer close(s.stopped)
	defer unsubscribe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	tick := time.NewTicker(s.cfg.AntiEntropyInterval)
	defer tick.Stop()
	s.rebalance(ctx, s.ring())
	for {
		select {
		case <-s.stop:
			return
		case _, ok := <-events:
			if !ok {
				// The overlay stopped (Leave, Shutdown): no more changes.
				events = nil
				continue
			}
			s.rebalance(ctx, s.ring())
		case <-tick.C:
			s.antiEntropy(ctx)
			s.rounds.Add(1)
		case <-s.kick:
			s.antiEntropy(ctx)
			s.rounds.Add(1)
		}
	}
}

// push is a partition's keys to send to some nodes.
type push struct {
	p       int
	snaps   []snap
	targets []string
	drop    bool // hand off: forget what did not change once every target has it

	mu     sync.Mutex
	failed bool
}

// rebalance moves data after a ring change: partitions this node still
// holds go to holders that newly became responsible; partitions it no
// longer holds go to all their holders and are then dropped here.
func (s *Store) rebalance(ctx context.Context, r *ring.Ring) {
	s.mu.Lock()
	prev := s.prev
	s.prev = r
	s.mu.Unlock()
	if prev != nil && sameNodes(prev, r) {
		// A membership event that did not move anything (metadata, a
		// suspect node); data left over from stale views is handed off by
		// the anti-entropy round, not here, so that keys handed to this
		// node by a leaving one are not sent straight back.
		return
	}
	now := s.cfg.Now()
	var jobs []*push
	for p := range s.local.parts {
		if s.local.size(p) == 0 {
			continue
		}
		holders := names(r.PartitionReplicas(p, s.cfg.Replicas))
		if len(holders) == 0 {
			continue // no ring: nowhere to go, keep everything
		}
		if !slices.Contains(holders, s.self) {
			jobs = append(jobs, &push{p: p, snaps: s.local.snapshot(p, now), targets: holders, drop: true})
			continue
		}
		if prev == nil {
			// The first ring this node sees: it cannot tell who is new;
			// anti-entropy reconciles.
			continue
		}
		old := names(prev.PartitionReplicas(p, s.cfg.Replicas))
		var fresh []string
		for _, h := range holders {
			if h != s.self && !slices.Contains(old, h) {
				fresh = append(fresh, h)
			}
		}
		if len(fresh) > 0 {
			jobs = append(jobs, &push{p: p, snaps: s.local.snapshot(p, now), targets: fresh})
		}
	}
	if len(jobs) == 0 {
		return
	}
	start := time.Now()
	sent, err := s.send(ctx, jobs, false)
	s.log.Info("store: rebalanced", "partitions", len(jobs), "records_sent", sent, "took", time.Since(start), "err", err)
}

// Handoff pushes every partition this node has to its holders on the ring
// without this node, so that nothing is lost when it leaves. Call it before
// leaving the overlay; writes that arrive after it are left to the other
// holders and anti-entropy.
func (s *Store) Handoff(ctx context.Context) error {
	r := s.ring()
	var others []ring.Node
	for _, n := range r.Nodes() {
		if n.Name != s.self {
			others = append(others, n)
		}
	}
	if len(others) == 0 {
		return fmt.Errorf("store %s: handoff: no other node of the ring to hand off to", s.cfg.Role)
	}
	after := ring.New(others, r.Partitions())
	// From now on this node, too, places keys without itself.
	s.markLeaving(s.self)
	now := s.cfg.Now()
	var jobs []*push
	for p := range s.local.parts {
		if s.local.size(p) == 0 {
			continue
		}
		jobs = append(jobs, &push{p: p, snaps: s.local.snapshot(p, now), targets: names(after.PartitionReplicas(p, s.cfg.Replicas))})
	}
	start := time.Now()
	sent, err := s.send(ctx, jobs, true)
	s.log.Info("store: handed off before leaving", "partitions", len(jobs), "records_sent", sent, "took", time.Since(start), "err", err)
	if err != nil {
		return fmt.Errorf("store %s: handoff: %w", s.cfg.Role, err)
	}
	return nil
}

// send pushes jobs to their targets in batches, at most SyncParallelism
// targets at once, then drops the handed-off partitions every target
// acknowledged. It returns the number of records sent. leaving tells the
// targets that this node is about to leave.
func (s *Store) send(ctx context.Context, jobs []*push, leaving bool) (int, error) {
	byTarget := map[string][]*push{}
	for _, j := range jobs {
		for _, t := range j.targets {
			byTarget[t] = append(byTarget[t], j)
		}
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sent int
	)
	sem := make(chan struct{}, s.cfg.SyncParallelism)
	for target, js := range byTarget {
		if target == s.self {
			continue // only when Handoff's ring still names us: cannot happen
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			n, err := s.pushTo(ctx, target, js, leaving)
			mu.Lock()
			defer mu.Unlock()
			sent += n
			if err != nil {
				errs = append(errs, err)
			}
		})
	}
	wg.Wait()
	for _, j := range jobs {
		if j.drop && !j.failed {
			s.local.dropUnchanged(j.p, j.snaps)
		}
	}
	return sent, errors.Join(errs...)
}

// pushTo sends the snapshots of js to target in batches of about
// BatchBytes. On the first failure the remaining jobs are marked failed.
func (s *Store) pushTo(ctx context.Context, target string, js []*push, leaving bool) (int, error) {
	c, err := s.client(target)
	if err == nil {
		sent := 0
		req := &meshpb.PutRequest{Role: s.cfg.Role, Leaving: leaving}
		size, first := 0, 0
		flush := func(upto int) error {
			if len(req.Entries) == 0 {
				return nil
			}
			cctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
			defer cancel()
			if _, err := c.Put(cctx, req); err != nil {
				return fmt.Errorf("push to %s: %w", target, err)
			}
			for _, e := range req.Entries {
				sent += len(e.Records)
			}
			req = &meshpb.PutRequest{Role: s.cfg.Role, Leaving: leaving}
			size, first = 0, upto
			return nil
		}
		for i, j := range js {
			for _, sn := range j.snaps {
				req.Entries = append(req.Entries, entryToPB(sn.key, sn.recs))
				size += entrySize(sn.key, sn.recs)
				if size >= s.cfg.BatchBytes {
					// This batch may hold the start of job i: job i is
					// only safe once its last key is sent.
					if err = flush(i); err != nil {
						break
					}
				}
			}
			if err != nil {
				break
			}
		}
		if err == nil {
			err = flush(len(js))
		}
		if err == nil {
			return sent, nil
		}
		for _, j := range js[first:] {
			j.mu.Lock()
			j.failed = true
			j.mu.Unlock()
		}
		return sent, err
	}
	for _, j := range js {
		j.mu.Lock()
		j.failed = true
		j.mu.Unlock()
	}
	return 0, fmt.Errorf("push to %s: %w", target, err)
}

// antiEntropy compares every partition this node holds with its other
// holders and reconciles the differing keys both ways. It first retries
// the handoff of partitions this node no longer holds.
func (s *Store) antiEntropy(ctx context.Context) {
	r := s.ring()
	if r.Len() == 0 {
		return
	}
	now := s.cfg.Now()
	var handoffs []*push
	byPeer := map[string][]*meshpb.PartitionDigest{}
	for p := range s.local.parts {
		holders := names(r.PartitionReplicas(p, s.cfg.Replicas))
		if !slices.Contains(holders, s.self) {
			if s.local.size(p) > 0 {
				handoffs = append(handoffs, &push{p: p, snaps: s.local.snapshot(p, now), targets: holders, drop: true})
			}
			continue
		}
		// Held partitions are compared even when empty here: the peer may
		// have what this node lost.
		d := s.local.partitionDigest(p, now)
		for _, h := range holders {
			if h != s.self {
				byPeer[h] = append(byPeer[h], &meshpb.PartitionDigest{Partition: uint32(p), Digest: d})
			}
		}
	}
	if len(handoffs) > 0 {
		if _, err := s.send(ctx, handoffs, false); err != nil {
			s.log.Debug("store: handoff retry failed", "err", err)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.cfg.SyncParallelism)
	for peer, digests := range byPeer {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := s.syncWith(ctx, peer, digests); err != nil {
				s.log.Debug("store: anti-entropy failed", "peer", peer, "err", err)
			}
		})
	}
	wg.Wait()
}

// syncWith reconciles the partitions whose digests differ from peer's.
func (s *Store) syncWith(ctx context.Context, peer string, digests []*meshpb.PartitionDigest) error {
	c, err := s.client(peer)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, s.cfg.SyncTimeout)
	defer cancel()
	resp, err := c.Digest(cctx, &meshpb.DigestRequest{Role: s.cfg.Role, Partitions: digests})
	if err != nil {
		return fmt.Errorf("digest with %s: %w", peer, err)
	}
	var errs []error
	repaired := 0
	for _, p := range resp.GetMismatched() {
		n, err := s.syncPartition(cctx, c, peer, int(p))
		repaired += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	if repaired > 0 {
		s.log.Debug("store: anti-entropy repaired keys", "peer", peer, "partitions", len(resp.GetMismatched()), "keys", repaired)
	}
	return errors.Join(errs...)
}

// syncPartition exchanges the differing keys of partition p with peer and
// returns how many keys were exchanged.
func (s *Store) syncPartition(ctx context.Context, c meshpb.StoreClient, peer string, p int) (int, error) {
	if p < 0 || p >= len(s.local.parts) {
		return 0, fmt.Errorf("sync with %s: partition %d out of range", peer, p)
	}
	now := s.cfg.Now()
	mine := s.local.keyDigests(p, now)
	req := &meshpb.SyncRequest{Role: s.cfg.Role, Partition: uint32(p), Keys: make([]*meshpb.KeyDigest, 0, len(mine))}
	for k, d := range mine {
		req.Keys = append(req.Keys, &meshpb.KeyDigest{Key: k, Digest: d})
	}
	resp, err := c.Sync(ctx, req)
	if err != nil {
		return 0, fmt.Errorf("sync partition %d with %s: %w", p, peer, err)
	}
	for _, e := range resp.GetEntries() {
		recs := recordsFromPB(e.GetRecords())
		for _, r := range recs {
			s.clock.observe(r.Version)
		}
		s.local.apply(p, e.GetKey(), recs, s.cfg.Now())
	}
	if len(resp.GetWant()) == 0 {
		return len(resp.GetEntries()), nil
	}
	put := &meshpb.PutRequest{Role: s.cfg.Role}
	for _, k := range resp.GetWant() {
		if recs := s.local.get(p, k, now); len(recs) > 0 {
			put.Entries = append(put.Entries, entryToPB(k, recs))
		}
	}
	if _, err := c.Put(ctx, put); err != nil {
		return len(resp.GetEntries()), fmt.Errorf("sync partition %d to %s: %w", p, peer, err)
	}
	return len(resp.GetEntries()) + len(put.Entries), nil
}

// Rounds is the number of anti-entropy rounds completed (a metric; tests
// wait on it).
func (s *Store) Rounds() uint64 { return s.rounds.Load() }

// AntiEntropy asks for an anti-entropy round now rather than at the next
// tick (admin "repair now", tests).
func (s *Store) AntiEntropy() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}
