package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/ring"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
)

// Membership is what a store needs of the overlay.
type Membership interface {
	Self() overlay.Member
	Ring(role string) *ring.Ring
	Subscribe() (<-chan struct{}, func())
}

// Dialer gives a connection to a node by name; *rpc.Client is one.
type Dialer interface {
	Conn(name string) (grpc.ClientConnInterface, error)
}

// ErrNoHolders is returned when the role's ring is empty.
var ErrNoHolders = errors.New("store: no node holds the key (the ring is empty)")

// Config configures a Store.
type Config struct {
	// Role names the ring the store lives on; required.
	Role string
	// Replicas (R) is the number of holders of a key, the owner included.
	Replicas int
	// WriteQuorum (W) is the number of holders that must acknowledge a
	// write; when fewer holders are reachable, all reachable ones.
	WriteQuorum int
	// Merger decides between versions of a record; nil: DefaultMerger.
	Merger Merger
	// Partitions must equal the ring's partition count.
	Partitions int
	// RPCTimeout bounds one replica call of a Put, Get or Delete.
	RPCTimeout time.Duration
	// SyncTimeout bounds one call of handoff or anti-entropy.
	SyncTimeout time.Duration
	// AntiEntropyInterval is how often partitions are compared with the
	// other holders (and failed handoffs retried).
	AntiEntropyInterval time.Duration
	// TombstoneTTL is how long a delete of a record that never expires is
	// remembered.
	TombstoneTTL time.Duration
	// BatchBytes is the approximate size of one handoff/anti-entropy
	// message.
	BatchBytes int
	// SyncParallelism bounds the peers a node pushes to at once.
	SyncParallelism int
	// HandoffGrace is how long after a ring change a read that finds
	// nothing on the new holders also asks the previous ones, which may
	// not have handed off yet.
	HandoffGrace time.Duration
	// LeaveGrace is how long a node that handed off before leaving is
	// kept off the ring here if it does not leave after all.
	LeaveGrace time.Duration
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Logger; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults for role.
func DefaultConfig(role string) Config {
	return Config{
		Role:                role,
		Replicas:            2,
		WriteQuorum:         2,
		Merger:              DefaultMerger,
		Partitions:          ring.DefaultPartitions,
		RPCTimeout:          2 * time.Second,
		SyncTimeout:         30 * time.Second,
		AntiEntropyInterval: 10 * time.Second,
		TombstoneTTL:        24 * time.Hour,
		BatchBytes:          1 << 20,
		SyncParallelism:     4,
		HandoffGrace:        time.Minute,
		LeaveGrace:          time.Minute,
		Now:                 time.Now,
	}
}

func (c *Config) fill() error {
	if c.Role == "" {
		return errors.New("store: config: no role")
	}
	d := DefaultConfig(c.Role)
	if c.Replicas <= 0 {
		c.Replicas = d.Replicas
	}
	if c.WriteQuorum <= 0 {
		c.WriteQuorum = d.WriteQuorum
	}
	if c.WriteQuorum > c.Replicas {
		return fmt.Errorf("store %s: config: write quorum %d exceeds replicas %d", c.Role, c.WriteQuorum, c.Replicas)
	}
	if c.Merger == nil {
		c.Merger = d.Merger
	}
	if c.Partitions <= 0 {
		c.Partitions = d.Partitions
	}
	if c.RPCTimeout <= 0 {
		c.RPCTimeout = d.RPCTimeout
	}
	if c.SyncTimeout <= 0 {
		c.SyncTimeout = d.SyncTimeout
	}
	if c.AntiEntropyInterval <= 0 {
		c.AntiEntropyInterval = d.AntiEntropyInterval
	}
	if c.TombstoneTTL <= 0 {
		c.TombstoneTTL = d.TombstoneTTL
	}
	if c.BatchBytes <= 0 {
		c.BatchBytes = d.BatchBytes
	}
	if c.SyncParallelism <= 0 {
		c.SyncParallelism = d.SyncParallelism
	}
	if c.HandoffGrace <= 0 {
		c.HandoffGrace = d.HandoffGrace
	}
	if c.LeaveGrace <= 0 {
		c.LeaveGrace = d.LeaveGrace
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	return nil
}

// Store is one role's replicated store as seen from one node.
type Store struct {
	cfg   Config
	log   *slog.Logger
	m     Membership
	peers Dialer
	self  string
	local *local
	clock *hlc

	repairs sync.WaitGroup                       // read repairs and replica writes still running
	puts    batches[*meshpb.Entry, struct{}]     // replica writes in flight, per peer
	gets    batches[string, map[string][]Record] // single-key reads in flight, per peer

	stop    chan struct{}
	stopped chan struct{}
	kick    chan struct{} // run an anti-entropy round now (tests)
	once    sync.Once

	views  views
	rounds atomic.Uint64 // anti-entropy rounds completed

	mu   sync.Mutex
	prev *ring.Ring // the ring the last rebalance worked from
}

// New creates the store of cfg.Role and starts its handoff and
// anti-entropy loop. Add it to the node's Registry so peers reach it.
func New(cfg Config, m Membership, peers Dialer) (*Store, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if m == nil || peers == nil {
		return nil, fmt.Errorf("store %s: membership and dialer are required", cfg.Role)
	}
	self := m.Self().Name
	if self == "" {
		return nil, fmt.Errorf("store %s: membership has no self name", cfg.Role)
	}
	if r := m.Ring(cfg.Role); r != nil && r.Partitions() != cfg.Partitions {
		return nil, fmt.Errorf("store %s: config.Partitions %d but the ring has %d", cfg.Role, cfg.Partitions, r.Partitions())
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Store{
		cfg:     cfg,
		log:     log.With("role", cfg.Role),
		m:       m,
		peers:   peers,
		self:    self,
		local:   newLocal(cfg.Partitions, cfg.Merger, cfg.TombstoneTTL),
		clock:   &hlc{},
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
		kick:    make(chan struct{}, 1),
	}
	s.puts.wg, s.gets.wg = &s.repairs, &s.repairs
	events, cancel := m.Subscribe()
	go s.run(events, cancel)
	return s, nil
}

// Role is the store's role.
func (s *Store) Role() string { return s.cfg.Role }

// Close stops the background loop and waits for writes in flight.
func (s *Store) Close() error {
	s.once.Do(func() { close(s.stop) })
	<-s.stopped
	s.repairs.Wait()
	return nil
}

func (s *Store) partition(key string) int { return s.ring().Partition(key) }

// Replicas names the nodes that should hold key: the owner, then replicas.
func (s *Store) Replicas(key string) []string {
	return names(s.ring().Replicas(key, s.cfg.Replicas))
}

func names(ns []ring.Node) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	return out
}

// Put writes records to key: each record is merged with the version its
// holders have (Merger). Records with a zero Version are stamped by this
// node's clock. Put returns after W holders acknowledged, or all reachable
// ones when fewer than W are; the other holders are still written.
//
// The store keeps the records' values as they are, and hands them to
// readers: the caller must not change a value once it is passed to Put.
// Copying each one, when every caller encodes a fresh value per write,
// was an allocation and a copy per REGISTER for nothing.
func (s *Store) Put(ctx context.Context, key string, recs ...Record) error {
	if len(recs) == 0 {
		return nil
	}
	now := s.cfg.Now()
	out := make([]Record, len(recs))
	for i, r := range recs {
		if r.ID == "" {
			return fmt.Errorf("store %s: put %q: record %d has no ID", s.cfg.Role, key, i)
		}
		r.horizon = time.Time{}
		if r.Version == 0 {
			r.Version, r.Writer = s.clock.nextAt(now), s.self
		} else {
			s.clock.observe(r.Version)
		}
		if r.Writer == "" {
			r.Writer = s.self
		}
		if r.Deleted && r.Expires.IsZero() {
			r.Expires = now.Add(s.cfg.TombstoneTTL)
		}
		out[i] = normalize(r)
	}
	return s.write(ctx, key, out, now)
}

// Delete removes records of key by writing tombstones that win over the
// versions the holders have now. A record no holder has is not written.
func (s *Store) Delete(ctx context.Context, key string, ids ...string) error {
	cur, err := s.readMany(ctx, []string{key})
	if err != nil {
		return err
	}
	now := s.cfg.Now()
	var tombs []Record
	for _, r := range cur[key] {
		if !slices.Contains(ids, r.ID) || !r.Live(now) {
			continue
		}
		t := r
		t.Deleted, t.Version, t.Writer, t.horizon = true, s.clock.nextAt(now), s.self, time.Time{}
		if t.Expires.IsZero() {
			t.Expires = now.Add(s.cfg.TombstoneTTL)
		}
		tombs = append(tombs, t)
	}
	if len(tombs) == 0 {
		return nil
	}
	return s.write(ctx, key, tombs, now)
}

type reply struct {
	node string
	recs []Record
	err  error
	old  bool // from a holder of the previous ring
}

// write sends recs to key's holders in parallel; now is the time of the
// write, from which a tombstone without expiry is kept for the TTL.
func (s *Store) write(ctx context.Context, key string, recs []Record, now time.Time) error {
	r := s.ring()
	p := r.Partition(key)
	nodes := r.PartitionReplicas(p, s.cfg.Replicas)
	if len(nodes) == 0 {
		return ErrNoHolders
	}
	if len(nodes) == 1 && nodes[0].Name == s.self {
		s.local.apply(p, key, recs, now)
		return nil
	}
	holders := names(nodes)
	need := min(s.cfg.WriteQuorum, len(holders))
	results := make(chan reply, len(holders))
	entry := entryToPB(key, recs)
	for _, h := range holders {
		if h == s.self {
			s.local.apply(p, key, recs, now)
			results <- reply{node: h}
			continue
		}
		s.repairs.Add(1)
		go func() {
			defer s.repairs.Done()
			// Not the caller's context: a write that returned after W acks
			// must still reach the other holders.
			c, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RPCTimeout)
			defer cancel()
			_, err := s.puts.do(c, h, entry, func(ctx context.Context, entries []*meshpb.Entry) (struct{}, error) {
				ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
				defer cancel()
				return struct{}{}, s.putRemote(ctx, h, &meshpb.PutRequest{Role: s.cfg.Role, Entries: entries})
			})
			results <- reply{node: h, err: err}
		}()
	}
	acks, answered := 0, 0
	var errs []error
	unreachableOnly := true
	for answered < len(holders) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("store %s: put %q: %w", s.cfg.Role, key, ctx.Err())
		case res := <-results:
			answered++
			if res.err == nil {
				acks++
				if acks >= need {
					return nil
				}
				continue
			}
			errs = append(errs, res.err)
			unreachableOnly = unreachableOnly && unreachable(res.err)
		}
	}
	if acks > 0 && unreachableOnly {
		return nil // every reachable holder has it
	}
	return fmt.Errorf("store %s: put %q: %d of %d holders acknowledged, %d needed: %w", s.cfg.Role, key, acks, len(holders), need, errors.Join(errs...))
}

// unreachable reports whether err means the holder could not be reached,
// as opposed to it refusing the write.
func unreachable(err error) bool {
	if errors.Is(err, rpc.ErrUnknownNode) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled:
		return true
	}
	return false
}

func (s *Store) client(node string) (meshpb.StoreClient, error) {
	cc, err := s.peers.Conn(node)
	if err != nil {
		return nil, err
	}
	return meshpb.NewStoreClient(cc), nil
}

func (s *Store) putRemote(ctx context.Context, node string, req *meshpb.PutRequest) error {
	c, err := s.client(node)
	if err != nil {
		return err
	}
	if _, err := c.Put(ctx, req); err != nil {
		return fmt.Errorf("put to %s: %w", node, err)
	}
	return nil
}

func (s *Store) getRemote(ctx context.Context, node string, keys ...string) (map[string][]Record, error) {
	c, err := s.client(node)
	if err != nil {
		return nil, err
	}
	resp, err := c.Get(ctx, &meshpb.GetRequest{Role: s.cfg.Role, Keys: keys})
	if err != nil {
		return nil, fmt.Errorf("get from %s: %w", node, err)
	}
	out := make(map[string][]Record, len(resp.GetEntries()))
	for _, e := range resp.GetEntries() {
		recs := recordsFromPB(e.GetRecords())
		for _, r := range recs {
			s.clock.observe(r.Version)
		}
		out[e.GetKey()] = recs
	}
	return out, nil
}

// Get returns key's live records. It asks every holder at once and merges
// their copies; holders whose copy differed are repaired in the background.
// It fails only when no holder answered. The records may be the store's
// own: read them, do not modify them or their values.
func (s *Store) Get(ctx context.Context, key string) ([]Record, error) {
	if s.Alone() {
		return s.local.getLive(s.partition(key), key, s.cfg.Now()), nil
	}
	merged, err := s.readMany(ctx, []string{key})
	if err != nil {
		return nil, err
	}
	return s.live(merged[key]), nil
}

// Each calls fn with each of key's live records, in ID order: Get without
// a slice to keep. When this node is alone, fn runs under the lock of the
// key's partition, and the next write of the key changes its records in
// place rather than copying them (Get's slice, shared with its caller,
// makes the write copy); fn must be quick and must not call the store.
// As with Get, the Values are the stored octets and must not be modified.
func (s *Store) Each(ctx context.Context, key string, fn func(Record)) error {
	if s.Alone() {
		s.local.eachLive(s.partition(key), key, s.cfg.Now(), fn)
		return nil
	}
	recs, err := s.Get(ctx, key)
	for _, r := range recs {
		fn(r)
	}
	return err
}

// GetMany is Get for many keys at once, with one call per holder rather
// than per key. Keys no holder answered for are missing from the result
// and counted in the error; keys that do not exist map to nothing.
func (s *Store) GetMany(ctx context.Context, keys []string) (map[string][]Record, error) {
	merged, err := s.readMany(ctx, keys)
	out := make(map[string][]Record, len(merged))
	for k, recs := range merged {
		if l := s.live(recs); len(l) > 0 {
			out[k] = l
		}
	}
	return out, err
}

// live filters merged records down to what a caller is served.
func (s *Store) live(recs []Record) []Record {
	return liveRecords(recs, s.cfg.Now())
}

// liveRecords is live's work at now. Neither the values nor, when every
// record is live, the slice are copied: no one modifies a value once it is
// stored (Record.Value), and a key's slice is replaced, never changed, by
// a write (local.apply). Copying every binding of an AOR on every REGISTER
// was a quarter of the octets a registrar allocated.
func liveRecords(recs []Record, now time.Time) []Record {
	n := 0
	for _, r := range recs {
		if r.Live(now) {
			n++
		}
	}
	switch n {
	case 0:
		return nil
	case len(recs):
		return recs[:n:n] // capped: a caller's append gets a slice of its own
	}
	out := make([]Record, 0, n)
	for _, r := range recs {
		if r.Live(now) {
			out = append(out, r)
		}
	}
	return out
}

// readMany returns the merged copies of keys (tombstones included). A key
// is in the result when at least one of its holders answered. Keys that no
// current holder has are also looked for on the holders of the previous
// ring for HandoffGrace after a change; what is found there repairs the
// current holders.
func (s *Store) readMany(ctx context.Context, keys []string) (map[string][]Record, error) {
	cur, prev := s.rings()
	if cur.Len() == 0 {
		return nil, ErrNoHolders
	}
	replies := s.fetch(ctx, cur, keys, nil)
	if prev != nil {
		var missing []string
		for _, k := range keys {
			if !slices.ContainsFunc(replies[k], func(r reply) bool { return r.err == nil && len(r.recs) > 0 }) {
				missing = append(missing, k)
			}
		}
		if len(missing) > 0 {
			asked := func(key, node string) bool {
				return slices.ContainsFunc(replies[key], func(r reply) bool { return r.node == node })
			}
			for k, rs := range s.fetch(ctx, prev, missing, asked) {
				for _, r := range rs {
					if r.err == nil {
						// Answers from old holders only feed the merge; a
						// failed old holder is no reason to fail the read.
						r.old = true
						replies[k] = append(replies[k], r)
					}
				}
			}
		}
	}
	now := s.cfg.Now()
	out := make(map[string][]Record, len(keys))
	var failed []string
	var errs []error
	for _, k := range keys {
		var ok []reply
		for _, r := range replies[k] {
			if r.err == nil {
				ok = append(ok, r)
			} else if len(errs) < 3 {
				errs = append(errs, r.err)
			}
		}
		if len(ok) == 0 {
			failed = append(failed, k)
			continue
		}
		digests := make([]uint64, len(ok))
		agree := true
		for i, r := range ok {
			digests[i] = keyDigest(k, r.recs)
			agree = agree && digests[i] == digests[0]
		}
		if agree {
			out[k] = ok[0].recs // the common case: nothing to merge or repair
			continue
		}
		merged := mergeCopies(s.cfg.Merger, now, s.cfg.TombstoneTTL, ok)
		out[k] = merged
		want := keyDigest(k, merged)
		for i, r := range ok {
			if !r.old && digests[i] != want {
				s.repair(ctx, cur.Partition(k), k, r.node, merged)
			}
		}
	}
	if len(failed) > 0 {
		return out, fmt.Errorf("store %s: get %q: no holder answered: %w", s.cfg.Role, failed[0], errors.Join(errs...))
	}
	return out, nil
}

// fetch asks the holders of keys on r for their copies, one call per
// holder, skipping (key, node) pairs skip returns true for. A failed call
// gives every key asked of that node an error reply.
func (s *Store) fetch(ctx context.Context, r *ring.Ring, keys []string, skip func(key, node string) bool) map[string][]reply {
	byNode := map[string][]string{}
	for _, k := range keys {
		for _, h := range r.Replicas(k, s.cfg.Replicas) {
			if skip == nil || !skip(k, h.Name) {
				byNode[h.Name] = append(byNode[h.Name], k)
			}
		}
	}
	var (
		mu  sync.Mutex
		wg  sync.WaitGroup
		out = make(map[string][]reply, len(keys))
	)
	add := func(node string, asked []string, got map[string][]Record, err error) {
		mu.Lock()
		defer mu.Unlock()
		for _, k := range asked {
			out[k] = append(out[k], reply{node: node, recs: got[k], err: err})
		}
	}
	for node, asked := range byNode {
		if node == s.self {
			now := s.cfg.Now()
			got := make(map[string][]Record, len(asked))
			for _, k := range asked {
				got[k] = s.local.get(r.Partition(k), k, now)
			}
			add(node, asked, got, nil)
			continue
		}
		wg.Go(func() {
			if len(asked) == 1 {
				// A single key, as every SIP request reads: with the
				// other reads under way to node (batch.go).
				got, err := s.gets.do(ctx, node, asked[0], func(ctx context.Context, keys []string) (map[string][]Record, error) {
					ctx, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
					defer cancel()
					return s.getRemote(ctx, node, keys...)
				})
				add(node, asked, got, err)
				return
			}
			for chunk := range slices.Chunk(asked, maxKeysPerGet) {
				c, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
				got, err := s.getRemote(c, node, chunk...)
				cancel()
				add(node, chunk, got, err)
			}
		})
	}
	wg.Wait()
	return out
}

// maxKeysPerGet bounds the keys of one Get call of GetMany.
const maxKeysPerGet = 1000

// mergeCopies merges several holders' copies of one key.
func mergeCopies(m Merger, now time.Time, ttl time.Duration, replies []reply) []Record {
	if len(replies) == 1 {
		return replies[0].recs
	}
	scratch := newLocal(1, m, ttl)
	for _, res := range replies {
		scratch.apply(0, "", res.recs, now)
	}
	return scratch.get(0, "", now)
}

// repair sends the merged copy to a holder whose copy differed.
func (s *Store) repair(ctx context.Context, p int, key, node string, merged []Record) {
	if node == s.self {
		s.local.apply(p, key, merged, s.cfg.Now())
		return
	}
	req := &meshpb.PutRequest{Role: s.cfg.Role, Entries: []*meshpb.Entry{entryToPB(key, merged)}}
	s.repairs.Add(1)
	go func() {
		defer s.repairs.Done()
		c, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RPCTimeout)
		defer cancel()
		if err := s.putRemote(c, node, req); err != nil {
			s.log.Debug("store: read repair failed", "key", key, "node", node, "err", err)
		}
	}()
}

// Local returns the live records of key this node holds, without asking
// anyone.
func (s *Store) Local(key string) []Record {
	now := s.cfg.Now()
	return liveRecords(s.local.get(s.partition(key), key, now), now)
}

// Keys lists the keys this node holds a live record of.
func (s *Store) Keys() []string { return s.local.liveKeys(s.cfg.Now()) }

// Count is the number of keys this node holds a live record of.
func (s *Store) Count() int { return s.local.stats(s.cfg.Now()).Keys }

// Stats counts what this node holds.
func (s *Store) Stats() Stats { return s.local.stats(s.cfg.Now()) }

// MemberStats asks a node (this one included) what it holds.
func (s *Store) MemberStats(ctx context.Context, node string) (Stats, error) {
	if node == s.self {
		return s.Stats(), nil
	}
	c, err := s.client(node)
	if err != nil {
		return Stats{}, fmt.Errorf("store %s: stats of %s: %w", s.cfg.Role, node, err)
	}
	resp, err := c.Stats(ctx, &meshpb.StatsRequest{Role: s.cfg.Role})
	if err != nil {
		return Stats{}, fmt.Errorf("store %s: stats of %s: %w", s.cfg.Role, node, err)
	}
	return Stats{Keys: int(resp.GetKeys()), Records: int(resp.GetRecords()), Tombstones: int(resp.GetTombstones())}, nil
}

// Holders asks every node of the ring whether it holds a live record of
// key and returns those that do, sorted. Nodes that do not answer are
// reported in the error, with the holders found among the others.
func (s *Store) Holders(ctx context.Context, key string) ([]string, error) {
	r := s.ring()
	p := r.Partition(key)
	now := s.cfg.Now()
	var (
		mu   sync.Mutex
		out  []string
		errs []error
		wg   sync.WaitGroup
	)
	for _, n := range r.Nodes() {
		wg.Go(func() {
			var recs []Record
			var err error
			if n.Name == s.self {
				recs = s.local.get(p, key, now)
			} else {
				c, cancel := context.WithTimeout(ctx, s.cfg.RPCTimeout)
				var got map[string][]Record
				got, err = s.getRemote(c, n.Name, key)
				cancel()
				recs = got[key]
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
				return
			}
			if slices.ContainsFunc(recs, func(r Record) bool { return r.Live(now) }) {
				out = append(out, n.Name)
			}
		})
	}
	wg.Wait()
	slices.Sort(out)
	if len(errs) > 0 {
		return out, fmt.Errorf("store %s: holders of %q: %w", s.cfg.Role, key, errors.Join(errs...))
	}
	return out, nil
}

// PartitionInfo describes one partition as this node sees it.
type PartitionInfo struct {
	Partition int      `json:"partition"`
	Holders   []string `json:"holders"` // from the ring, owner first
	Held      bool     `json:"held"`    // this node is one of Holders
	Keys      int      `json:"keys"`    // keys this node has in it
	Digest    uint64   `json:"digest"`
}

// Partitions describes the partitions this node holds or has data in.
func (s *Store) Partitions() []PartitionInfo {
	r := s.ring()
	now := s.cfg.Now()
	var out []PartitionInfo
	for p := range s.local.parts {
		holders := names(r.PartitionReplicas(p, s.cfg.Replicas))
		held := slices.Contains(holders, s.self)
		n := s.local.size(p)
		if !held && n == 0 {
			continue
		}
		out = append(out, PartitionInfo{Partition: p, Holders: holders, Held: held, Keys: n, Digest: s.local.partitionDigest(p, now)})
	}
	return out
}
