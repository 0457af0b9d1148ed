package node_test

// End-to-end tests of the replicated store (issue 3, "must show") with real
// `sipmesh run` processes on loopback: records go in and come out through
// the admin API (POST /v1/records/put and /v1/records/get), copies are
// counted through `ring --json` items and `lookup --json` holders, and each
// node's own copy is read over the replica protocol (meshpb.Store Get) with
// a node certificate of the cluster, as a peer would. Nodes are killed with
// SIGKILL, paused with SIGSTOP and stopped with SIGTERM.
//
// Each test has its own loopback /24 (127.0.31.x – 127.0.35.x).

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
	"github.com/sipmesh/sipmesh/node"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
	"github.com/sipmesh/sipmesh/overlay/store"
)

const (
	storeRole = certs.RoleRegistrar
	domain    = "example.test"
	// settleTimeout bounds a wait for membership, rings and copies to
	// settle after a start, kill, pause or stop (failure detection with
	// memberlist's LAN timing takes about 5 s; a loaded machine more).
	settleTimeout = 60 * time.Second
)

// antiEntropyInterval is how often a node compares its partitions with the
// other holders: store.DefaultConfig's, which the node does not change.
var antiEntropyInterval = store.DefaultConfig(storeRole).AntiEntropyInterval

// mesh is a cluster of sipmesh processes with one replication factor, an
// admin client per node and a probe that reads each node's own copy.
type mesh struct {
	t        *testing.T
	c        *proctest.Cluster
	replicas int

	mu      sync.Mutex
	order   []string // names in start order
	running map[string]bool
	admins  map[string]*node.AdminClient
	rpcAddr map[string]string // name -> IP:7947

	probeOnce sync.Once
	probe     *rpc.Client
}

func newMesh(t *testing.T, subnet string, replicas int) *mesh {
	t.Helper()
	return &mesh{
		t: t, c: proctest.NewCluster(t, domain, subnet), replicas: replicas,
		running: map[string]bool{}, admins: map[string]*node.AdminClient{},
		rpcAddr: map[string]string{},
	}
}

// start issues a certificate for name in datacenter dc (dc1 when ""),
// writes a config with overlay.replicas that joins every running node, and
// starts the process.
func (m *mesh) start(name, dc string) {
	m.t.Helper()
	ip := m.c.NextIP()
	m.c.IssueNode(name, certs.IssueRequest{Datacenter: dc, IPs: []net.IP{net.ParseIP(ip)}})
	m.mu.Lock()
	var join []string
	for _, n := range m.order {
		if m.running[n] {
			join = append(join, strconv.Quote(m.c.Node(n).IP+":7946"))
		}
	}
	m.mu.Unlock()
	cfg := fmt.Sprintf(`node: {address: "%%IP%%"}
tls: {ca: ca.crt, cert: %[1]s.crt, key: %[1]s.key}
overlay: {join: [%[2]s], timing: lan, replicas: %[3]d}
log: {level: info}
`, name, strings.Join(join, ", "), m.replicas)
	path := m.c.WriteConfig(name, ip, cfg)
	m.c.Start(name, ip, path)
	target, err := node.TargetFromConfig(path)
	if err != nil {
		m.t.Fatal(err)
	}
	target.RequestTimeout = 30 * time.Second
	ac, err := node.NewAdminClient(target)
	if err != nil {
		m.t.Fatal(err)
	}
	m.mu.Lock()
	m.order = append(m.order, name)
	m.running[name] = true
	m.admins[name] = ac
	m.rpcAddr[name] = ip + ":7947"
	m.mu.Unlock()
}

func (m *mesh) admin(name string) *node.AdminClient {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.admins[name]
}

func (m *mesh) kill(name string) {
	m.c.Kill(name)
	m.mu.Lock()
	m.running[name] = false
	m.mu.Unlock()
}

func (m *mesh) stop(name string) error {
	err := m.c.Stop(name)
	m.mu.Lock()
	m.running[name] = false
	m.mu.Unlock()
	return err
}

// signal sends sig to name's process, found by its command line (proctest
// does not export the process).
func (m *mesh) signal(name string, sig syscall.Signal) {
	m.t.Helper()
	want := []byte("run\x00--config\x00" + m.c.Node(name).Config + "\x00")
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range matches {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, want) {
			continue
		}
		pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if err != nil {
			continue
		}
		if err := syscall.Kill(pid, sig); err != nil {
			m.t.Fatalf("signal %v to %s (pid %d): %v", sig, name, pid, err)
		}
		return
	}
	m.t.Fatalf("no process found for %s", name)
}

// settled reports nil once every observer sees exactly want alive and as
// the registrar ring, with the item count of every ring member.
func (m *mesh) settled(want []string, observers ...string) error {
	want = slices.Sorted(slices.Values(want))
	for _, o := range observers {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ms, err := m.admin(o).Members(ctx)
		cancel()
		if err != nil {
			return err
		}
		var alive []string
		for _, mb := range ms {
			if mb.State == "alive" {
				alive = append(alive, mb.Name)
			}
		}
		slices.Sort(alive)
		if !slices.Equal(alive, want) {
			return fmt.Errorf("%s sees alive %v, want %v", o, alive, want)
		}
		items, err := m.items(o)
		if err != nil {
			return err
		}
		if got := slices.Sorted(mapKeys(items)); !slices.Equal(got, want) {
			return fmt.Errorf("%s has ring %v, want %v", o, got, want)
		}
	}
	return nil
}

// waitSettled waits until settled(want, want...).
func (m *mesh) waitSettled(want ...string) {
	m.t.Helper()
	proctest.Eventually(m.t, settleTimeout, "mesh settled on "+strings.Join(want, ","), func() error {
		return m.settled(want, want...)
	})
}

// items is the registrar ring of observer's `ring --json` with each
// member's live records held; an error when a member's count is missing.
func (m *mesh) items(observer string) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rg, err := m.admin(observer).Ring(ctx, storeRole)
	if err != nil {
		return nil, err
	}
	out := map[string]int{}
	for _, mb := range rg.Roles[storeRole] {
		if mb.Items == nil {
			return nil, fmt.Errorf("%s: ring member %s shows no items", observer, mb.Name)
		}
		out[mb.Name] = *mb.Items
	}
	return out, nil
}

// share is member's share of the partitions of observer's registrar ring.
func (m *mesh) share(observer, member string) (float64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rg, err := m.admin(observer).Ring(ctx, storeRole)
	if err != nil {
		return 0, err
	}
	for _, mb := range rg.Roles[storeRole] {
		if mb.Name == member {
			return mb.Share, nil
		}
	}
	return 0, fmt.Errorf("%s is not on %s's ring", member, observer)
}

func sum(items map[string]int) int {
	n := 0
	for _, v := range items {
		n += v
	}
	return n
}

func mapKeys[V any](mp map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range mp {
			if !yield(k) {
				return
			}
		}
	}
}

// --- records -------------------------------------------------------------

func key(prefix string, i int) string { return fmt.Sprintf("%s%05d@%s", prefix, i, domain) }

func contactOf(k string) string { return "sip:" + strings.Split(k, "@")[0] + "@192.0.2.7:5060" }

func binding(k string, expiresIn int) node.RecordPutJSON {
	v, _ := json.Marshal(map[string]any{"contact": contactOf(k), "q": 0.5})
	return node.RecordPutJSON{Key: k, ID: "c1", Value: v, ExpiresIn: expiresIn}
}

// putAll writes recs through randomly chosen nodes of via, in requests of
// batch records, par requests at a time.
func (m *mesh) putAll(recs []node.RecordPutJSON, batch, par int, via ...string) error {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	sem := make(chan struct{}, par)
	for i := 0; i < len(recs); i += batch {
		chunk := recs[i:min(i+batch, len(recs))]
		through := via[rand.IntN(len(via))]
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := m.admin(through).PutRecords(ctx, storeRole, chunk); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("put %d records through %s: %w", len(chunk), through, err))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// getRecords reads keys through from, retrying a failed request (not a
// wrong answer) a few times.
func (m *mesh) getRecords(from string, keys []string) (map[string][]map[string]any, error) {
	var err error
	for attempt := 0; attempt < 4; attempt++ {
		if attempt > 0 {
			time.Sleep(time.Duration(attempt) * 250 * time.Millisecond)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		var got map[string][]map[string]any
		got, err = m.admin(from).GetRecords(ctx, storeRole, keys)
		cancel()
		if err == nil {
			return got, nil
		}
	}
	return nil, fmt.Errorf("get %d keys through %s: %w", len(keys), from, err)
}

// verifyReads reads every key of want through from and checks it: a
// non-empty want is the one binding's contact, "" means no record at all.
func (m *mesh) verifyReads(from string, want map[string]string) error {
	keys := slices.Sorted(mapKeys(want))
	var missing, wrong, extra int
	var examples []string
	note := func(s string) {
		if len(examples) < 5 {
			examples = append(examples, s)
		}
	}
	for i := 0; i < len(keys); i += 1000 {
		chunk := keys[i:min(i+1000, len(keys))]
		got, err := m.getRecords(from, chunk)
		if err != nil {
			return err
		}
		for _, k := range chunk {
			recs := got[k]
			switch w := want[k]; {
			case w == "" && len(recs) > 0:
				extra++
				note(fmt.Sprintf("%s: want nothing, read %v", k, recs))
			case w == "":
			case len(recs) == 0:
				missing++
				note(k + ": missing")
			case len(recs) != 1 || recs[0]["contact"] != w || recs[0]["id"] != "c1":
				wrong++
				note(fmt.Sprintf("%s: read %v", k, recs))
			}
		}
	}
	if missing+wrong+extra > 0 {
		return fmt.Errorf("reading %d keys through %s: %d missing, %d wrong, %d that should be gone; e.g. %s",
			len(keys), from, missing, wrong, extra, strings.Join(examples, "; "))
	}
	return nil
}

// verifyEverywhere runs verifyReads through each of from, in parallel.
func (m *mesh) verifyEverywhere(want map[string]string, from ...string) error {
	errs := make([]error, len(from))
	var wg sync.WaitGroup
	for i, f := range from {
		wg.Go(func() { errs[i] = m.verifyReads(f, want) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// --- each node's own copy, over the replica protocol -----------------------

// probeView is the membership the probe's rpc.Client needs: every started
// node, alive, at its RPC address.
type probeView struct{ m *mesh }

func (v probeView) Member(name string) (overlay.Member, bool) {
	v.m.mu.Lock()
	defer v.m.mu.Unlock()
	addr, ok := v.m.rpcAddr[name]
	return overlay.Member{Name: name, State: overlay.StateAlive, Services: map[string]string{overlay.ServiceRPC: addr}}, ok
}

func (probeView) Subscribe() (<-chan struct{}, func()) { return make(chan struct{}), func() {} }

func (m *mesh) probeClient() *rpc.Client {
	m.probeOnce.Do(func() {
		// A node certificate of the cluster for a node that never runs.
		m.c.IssueNode("probe", certs.IssueRequest{})
		mat, err := certs.Load(filepath.Join(m.c.Dir, "ca.crt"), filepath.Join(m.c.Dir, "probe.crt"), filepath.Join(m.c.Dir, "probe.key"), "")
		if err != nil {
			m.t.Fatal(err)
		}
		cfg := rpc.DefaultClientConfig()
		cfg.Material = mat
		cl, err := rpc.NewClient(cfg, probeView{m})
		if err != nil {
			m.t.Fatal(err)
		}
		m.t.Cleanup(func() { cl.Close() })
		m.probe = cl
	})
	return m.probe
}

// local returns node name's own copy of keys: records not yet forgotten,
// tombstones and expired versions included.
func (m *mesh) local(name string, keys []string) (map[string][]*meshpb.Record, error) {
	cc, err := m.probeClient().Conn(name)
	if err != nil {
		return nil, err
	}
	out := map[string][]*meshpb.Record{}
	for i := 0; i < len(keys); i += 2000 {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		resp, err := meshpb.NewStoreClient(cc).Get(ctx, &meshpb.GetRequest{Role: storeRole, Keys: keys[i:min(i+2000, len(keys))]})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("own copy of %s: %w", name, err)
		}
		for _, e := range resp.GetEntries() {
			out[e.GetKey()] = e.GetRecords()
		}
	}
	return out, nil
}

func liveRec(r *meshpb.Record, now time.Time) bool {
	return !r.GetDeleted() && (r.GetExpiresUnixNano() == 0 || now.UnixNano() < r.GetExpiresUnixNano())
}

// copies maps each key to the nodes among names whose own copy has a live
// record of it, and to the nodes holding a tombstone of it.
func (m *mesh) copies(names, keys []string) (live, tombs map[string][]string, err error) {
	live, tombs = map[string][]string{}, map[string][]string{}
	for _, n := range names {
		got, err := m.local(n, keys)
		if err != nil {
			return nil, nil, err
		}
		now := time.Now()
		for k, recs := range got {
			if slices.ContainsFunc(recs, func(r *meshpb.Record) bool { return liveRec(r, now) }) {
				live[k] = append(live[k], n)
			}
			if slices.ContainsFunc(recs, (*meshpb.Record).GetDeleted) {
				tombs[k] = append(tombs[k], n)
			}
		}
	}
	return live, tombs, nil
}

// exactCopies checks that every key has a live record on exactly r of
// names.
func (m *mesh) exactCopies(names, keys []string, r int) error {
	live, _, err := m.copies(names, keys)
	if err != nil {
		return err
	}
	bad := 0
	var examples []string
	for _, k := range keys {
		if len(live[k]) != r {
			bad++
			if len(examples) < 5 {
				examples = append(examples, fmt.Sprintf("%s on %v", k, live[k]))
			}
		}
	}
	if bad > 0 {
		return fmt.Errorf("%d of %d keys do not have exactly %d live copies on %v; e.g. %s", bad, len(keys), r, names, strings.Join(examples, "; "))
	}
	return nil
}

// lookup is `lookup KEY --json` through the admin API.
func (m *mesh) lookup(from, k string) (node.LookupJSON, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return m.admin(from).Lookup(ctx, k, storeRole)
}

// waitCopies waits until observer's ring is exactly members and their
// items add up to want. It returns how long after since the ring first
// showed exactly members, and how long until the items added up.
func (m *mesh) waitCopies(observer string, members []string, want int, since time.Time) (ring, copies time.Duration) {
	m.t.Helper()
	members = slices.Sorted(slices.Values(members))
	proctest.Eventually(m.t, settleTimeout, fmt.Sprintf("%d copies on %v", want, members), func() error {
		items, err := m.items(observer)
		if err != nil {
			return err
		}
		if got := slices.Sorted(mapKeys(items)); !slices.Equal(got, members) {
			return fmt.Errorf("%s's ring is %v", observer, got)
		}
		if ring == 0 {
			ring = time.Since(since)
		}
		if s := sum(items); s != want {
			return fmt.Errorf("items %v add up to %d", items, s)
		}
		copies = time.Since(since)
		return nil
	})
	return ring, copies
}

// --- 1. two kills in a row ------------------------------------------------

func TestStoreSurvivesTwoKillsInARow(t *testing.T) {
	m := newMesh(t, "127.0.31.", 2)
	names := []string{"n1", "n2", "n3", "n4", "n5"}
	for _, n := range names {
		m.start(n, "")
	}
	m.waitSettled(names...)

	const total = 10000
	want := map[string]string{}
	var recs []node.RecordPutJSON
	for i := range total {
		k := key("u", i)
		want[k] = contactOf(k)
		recs = append(recs, binding(k, 0))
	}
	start := time.Now()
	if err := m.putAll(recs, 500, 4, names...); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d keys through random nodes in %v", total, time.Since(start).Round(time.Millisecond))
	m.waitCopies("n1", names, 2*total, start)
	keys := slices.Collect(mapKeys(want))
	if err := m.exactCopies(names, keys, 2); err != nil {
		t.Fatal(err)
	}
	// n2 dies first, then the node it shares the most keys with: the keys
	// held only by those two survive only if the mesh re-replicates them
	// in between.
	live, _, err := m.copies(names, keys)
	if err != nil {
		t.Fatal(err)
	}
	shared := map[string]int{}
	for _, h := range live {
		if len(h) == 2 && slices.Contains(h, "n2") {
			for _, n := range h {
				if n != "n2" {
					shared[n]++
				}
			}
		}
	}
	second, doomed := "", 0
	for _, n := range names {
		if n != "n2" && shared[n] > doomed {
			second, doomed = n, shared[n]
		}
	}
	if doomed == 0 {
		t.Fatal("n2 shares no key with another node")
	}

	// First kill: every key is readable from every survivor at once,
	// before the mesh has even noticed.
	killed := time.Now()
	m.kill("n2")
	survivors := []string{"n1", "n3", "n4", "n5"}
	if err := m.verifyEverywhere(want, survivors...); err != nil {
		t.Fatalf("right after SIGKILL of n2: %v", err)
	}
	t.Logf("after SIGKILL of n2: %d/%d keys read from each of %v", total, total, survivors)

	// The mesh restores 2 copies of every key with no write.
	detect, restore := m.waitCopies("n1", survivors, 2*total, killed)
	t.Logf("2 copies of %d keys restored %v after SIGKILL of n2 (n2 off n1's ring after %v)", total, restore.Round(time.Millisecond), detect.Round(time.Millisecond))
	proctest.Eventually(t, settleTimeout, "every survivor counts 2 copies", func() error {
		for _, o := range survivors {
			items, err := m.items(o)
			if err != nil {
				return err
			}
			if sum(items) != 2*total || len(items) != len(survivors) {
				return fmt.Errorf("%s: items %v", o, items)
			}
		}
		return m.exactCopies(survivors, keys, 2)
	})
	for i := range 40 {
		k := key("u", i*total/40)
		lk, err := m.lookup(survivors[i%len(survivors)], k)
		if err != nil {
			t.Fatal(err)
		}
		if len(lk.Holders) != 2 || !sameSet(lk.Holders, lk.Replicas) || slices.Contains(lk.Holders, "n2") {
			t.Fatalf("lookup %s: holders %v, replicas %v: want the 2 replicas, alive", k, lk.Holders, lk.Replicas)
		}
	}

	// Second kill: still nothing lost.
	killed = time.Now()
	m.kill(second)
	survivors = slices.DeleteFunc(survivors, func(n string) bool { return n == second })
	if err := m.verifyEverywhere(want, survivors...); err != nil {
		t.Fatalf("right after SIGKILL of %s: %v", second, err)
	}
	detect, restore = m.waitCopies(survivors[0], survivors, 2*total, killed)
	if err := m.verifyEverywhere(want, survivors...); err != nil {
		t.Fatalf("after the mesh noticed SIGKILL of %s: %v", second, err)
	}
	t.Logf("after SIGKILL of %s: %d/%d keys read from each of %v (%d of them were held only by n2 and %s before the first kill); "+
		"2 copies again %v after the kill (%s off %s's ring after %v)",
		second, total, total, survivors, doomed, second, restore.Round(time.Millisecond), second, survivors[0], detect.Round(time.Millisecond))
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

// --- 2. join takes its share; graceful leave hands off ---------------------

func TestStoreJoinTakesShareAndLeaveHandsOff(t *testing.T) {
	// R=1: a record lives on one node only, so nothing but the handoff of
	// a leaving node can save it.
	m := newMesh(t, "127.0.32.", 1)
	for _, n := range []string{"n1", "n2", "n3"} {
		m.start(n, "")
	}
	m.waitSettled("n1", "n2", "n3")
	const total = 6000
	want := map[string]string{}
	var recs []node.RecordPutJSON
	for i := range total {
		k := key("j", i)
		want[k] = contactOf(k)
		recs = append(recs, binding(k, 0))
	}
	if err := m.putAll(recs, 500, 3, "n1", "n2", "n3"); err != nil {
		t.Fatal(err)
	}
	keys := slices.Collect(mapKeys(want))
	m.waitCopies("n1", []string{"n1", "n2", "n3"}, total, time.Now())

	// Join: the newcomer takes its share, and the others let go of it.
	joined := time.Now()
	m.start("n4", "")
	all := []string{"n1", "n2", "n3", "n4"}
	m.waitSettled(all...)
	// Done when the counts add up, n4 has some, and nothing has moved for
	// a second; then every key has exactly one copy.
	var (
		items       map[string]int
		unchangedAt time.Time
	)
	proctest.Eventually(t, settleTimeout, "items after the join stop moving", func() error {
		got, err := m.items("n1")
		if err != nil {
			return err
		}
		if !mapsEqual(got, items) {
			items, unchangedAt = got, time.Now()
		}
		if sum(items) != total || items["n4"] == 0 || len(items) != 4 {
			return fmt.Errorf("items %v", items)
		}
		if time.Since(unchangedAt) < time.Second {
			return fmt.Errorf("items %v, unchanged for %v", items, time.Since(unchangedAt))
		}
		return m.exactCopies(all, keys, 1)
	})
	took := unchangedAt.Sub(joined)
	share, err := m.share("n1", "n4")
	if err != nil {
		t.Fatal(err)
	}
	frac := float64(items["n4"]) / total
	t.Logf("joining n4 took %d of %d items (%.3f; 1/N = %.3f; its ring share %.3f), settled within %v of its start; items %v",
		items["n4"], total, frac, 1.0/4, share, took.Round(time.Millisecond), items)
	if frac < 0.6/4 || frac > 1.4/4 {
		t.Errorf("n4 holds %.3f of the items, not about 1/4", frac)
	}
	if d := frac - share; d > 0.05 || d < -0.05 {
		t.Errorf("n4 holds %.3f of the items but owns %.3f of the ring", frac, share)
	}
	if err := m.verifyEverywhere(want, all...); err != nil {
		t.Fatalf("after n4 joined: %v", err)
	}
	for i := range 40 {
		k := key("j", i*total/40)
		lk, err := m.lookup(all[i%4], k)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(lk.Holders, []string{lk.Owner}) {
			t.Fatalf("lookup %s after the join: holders %v, owner %s", k, lk.Holders, lk.Owner)
		}
	}

	// Graceful leave: n2 hands its records off before it goes. Once its
	// process has exited, every key is still readable.
	before, err := m.items("n1")
	if err != nil {
		t.Fatal(err)
	}
	if err := m.stop("n2"); err != nil {
		t.Fatal(err)
	}
	if code, _ := m.c.Node("n2").Wait(0); code != 0 {
		t.Errorf("n2 exited with %d after SIGTERM", code)
	}
	rest := []string{"n1", "n3", "n4"}
	if err := m.verifyEverywhere(want, rest...); err != nil {
		t.Fatalf("after n2 left (it held %d records): %v", before["n2"], err)
	}
	// And it was the handoff before leaving that moved them (a rebalance
	// once the node has left would move them too, in a race with its stop).
	sent, ok := handedOff(m.c.Node("n2").LogText())
	if !ok || sent < before["n2"] {
		t.Errorf("n2's log has no complete registrar handoff of its %d records before leaving "+
			`(want a line msg="store: handed off before leaving" role=registrar records_sent=N err=<nil>, N >= %[1]d; found %v, records_sent %d)`,
			before["n2"], ok, sent)
	}
	m.waitCopies("n1", rest, total, time.Now())
	if err := m.exactCopies(rest, keys, 1); err != nil {
		t.Fatal(err)
	}
	t.Logf("n2 left gracefully holding %d records; %d/%d keys read from each of %v", before["n2"], total, total, rest)
}

// handedOff finds the registrar's "handed off before leaving" line in a
// node's log and returns its records_sent, if it reports no error.
func handedOff(log string) (int, bool) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `msg="store: handed off before leaving"`) || !strings.Contains(line, "role=registrar") {
			continue
		}
		if !strings.Contains(line, "err=<nil>") {
			return 0, false
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, "records_sent="); ok {
				n, err := strconv.Atoi(v)
				return n, err == nil
			}
		}
	}
	return 0, false
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// --- 3. a copy in each datacenter -------------------------------------------

func TestStoreCopyInEachDatacenter(t *testing.T) {
	m := newMesh(t, "127.0.33.", 2)
	dcs := map[string]string{"e1": "east", "e2": "east", "e3": "east", "w1": "west", "w2": "west"}
	names := []string{"e1", "w1", "e2", "e3", "w2"}
	for _, n := range names {
		m.start(n, dcs[n])
	}
	m.waitSettled(names...)
	const total = 3000
	var recs []node.RecordPutJSON
	var keys []string
	for i := range total {
		k := key("dc", i)
		keys = append(keys, k)
		recs = append(recs, binding(k, 0))
	}
	if err := m.putAll(recs, 500, 3, names...); err != nil {
		t.Fatal(err)
	}
	m.waitCopies("e1", names, 2*total, time.Now())

	// The datacenters as the mesh reports them.
	ms, err := m.c.Members("w2")
	if err != nil {
		t.Fatal(err)
	}
	dcOf := map[string]string{}
	for _, mb := range ms {
		dcOf[mb.Name] = mb.Datacenter
	}
	for n, dc := range dcs {
		if dcOf[n] != dc {
			t.Fatalf("members --json says %s is in %q, its certificate says %q", n, dcOf[n], dc)
		}
	}

	// Every key: exactly one copy in each datacenter.
	live, _, err := m.copies(names, keys)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		var in []string
		for _, h := range live[k] {
			in = append(in, dcOf[h])
		}
		slices.Sort(in)
		if !slices.Equal(in, []string{"east", "west"}) {
			t.Fatalf("%s is held by %v (datacenters %v): want one copy in east and one in west", k, live[k], in)
		}
	}
	// The same through ring --json items, per datacenter.
	items, err := m.items("w1")
	if err != nil {
		t.Fatal(err)
	}
	perDC := map[string]int{}
	for n, c := range items {
		perDC[dcOf[n]] += c
	}
	if perDC["east"] != total || perDC["west"] != total {
		t.Fatalf("items per datacenter %v (%v): want %d in each", perDC, items, total)
	}
	t.Logf("items per node %v: %d records in east, %d in west", items, perDC["east"], perDC["west"])

	// And through `sipmesh lookup --json` on a sample.
	for i := range 12 {
		k := keys[i*total/12]
		from := names[i%len(names)]
		out, err := m.c.CLI("lookup", k, "--json", "--config", m.c.Node(from).Config)
		if err != nil {
			t.Fatal(err)
		}
		var lk node.LookupJSON
		if err := json.Unmarshal([]byte(out), &lk); err != nil {
			t.Fatalf("lookup --json: %v: %s", err, out)
		}
		var in []string
		for _, h := range lk.Holders {
			in = append(in, dcOf[h])
		}
		slices.Sort(in)
		if !slices.Equal(in, []string{"east", "west"}) || len(lk.Records) != 1 || lk.Records[0]["contact"] != contactOf(k) {
			t.Fatalf("lookup %s through %s: holders %v in %v, records %v", k, from, lk.Holders, in, lk.Records)
		}
	}
}

// --- 4. expired and deleted records stay gone ---------------------------------

func TestStoreExpiredAndDeletedStayGone(t *testing.T) {
	m := newMesh(t, "127.0.34.", 2)
	first := []string{"n1", "n2", "n3", "n4"}
	for _, n := range first {
		m.start(n, "")
	}
	m.waitSettled(first...)

	// L: live, never expire. D: live, then deleted. X: live with no
	// expiry, then rewritten to expire in 2 s. E: expire in 2 s.
	const each = 400
	want := map[string]string{}
	var live, expiring []node.RecordPutJSON
	var lKeys, dKeys, xKeys, eKeys []string
	for i := range each {
		for _, p := range []string{"l", "d", "x"} {
			k := key(p, i)
			live = append(live, binding(k, 0))
			want[k] = contactOf(k)
		}
		lKeys, dKeys, xKeys = append(lKeys, key("l", i)), append(dKeys, key("d", i)), append(xKeys, key("x", i))
		k := key("e", i)
		eKeys = append(eKeys, k)
		expiring = append(expiring, binding(k, 2))
	}
	if err := m.putAll(live, 300, 2, first...); err != nil {
		t.Fatal(err)
	}
	if err := m.verifyEverywhere(want, "n1", "n4"); err != nil {
		t.Fatal(err)
	}
	changed := append(slices.Clone(dKeys), xKeys...)
	held, _, err := m.copies([]string{"n3"}, changed)
	if err != nil {
		t.Fatal(err)
	}
	if len(held) == 0 {
		t.Fatal("n3 holds none of the keys about to change: the test proves nothing")
	}

	// Pause n3 (SIGSTOP) until the others think it dead: it keeps its
	// copies, which become stale when D is deleted and X rewritten.
	m.signal("n3", syscall.SIGSTOP)
	paused := true
	t.Cleanup(func() {
		if paused {
			m.signal("n3", syscall.SIGCONT)
		}
	})
	m.mu.Lock()
	m.running["n3"] = false
	m.mu.Unlock()
	others := []string{"n1", "n2", "n4"}
	proctest.Eventually(t, settleTimeout, "n3 off the rings", func() error {
		return m.settled(others, others...)
	})
	var changes []node.RecordPutJSON
	for i := range each {
		d := binding(key("d", i), 0)
		d.Deleted = true
		changes = append(changes, d, binding(key("x", i), 2))
		want[key("d", i)] = ""
		want[key("x", i)] = ""
	}
	wroteX := time.Now()
	if err := m.putAll(changes, 200, 2, others...); err != nil {
		t.Fatal(err)
	}
	xExpired := wroteX.Add(2 * time.Second)
	dWant := map[string]string{}
	for _, k := range dKeys {
		dWant[k] = ""
	}
	if err := m.verifyReads("n2", dWant); err != nil {
		t.Fatalf("deleted records read at once: %v", err)
	}

	// Once the rewritten X has expired (read through n1: nothing), n3
	// comes back with its stale copies: deleted D, and the never-expiring
	// version of X that the expired one superseded.
	xWant := map[string]string{}
	for _, k := range xKeys {
		xWant[k] = ""
	}
	proctest.Eventually(t, 30*time.Second, "rewritten records expired", func() error {
		return m.verifyReads("n1", xWant)
	})
	if time.Now().Before(xExpired) {
		t.Fatalf("rewritten records that expire in 2 s are gone before 2 s have passed")
	}
	m.signal("n3", syscall.SIGCONT)
	paused = false
	m.mu.Lock()
	m.running["n3"] = true
	m.mu.Unlock()
	proctest.Eventually(t, settleTimeout, "n3 back on the rings", func() error {
		return m.settled(first, first...)
	})

	// E is written to expire in 2 s; then, while it is still live, n5
	// joins and n2 dies, so that E is handed off and re-replicated.
	wroteE := time.Now()
	if err := m.putAll(expiring, 200, 2, first...); err != nil {
		t.Fatal(err)
	}
	eExpired := wroteE.Add(2 * time.Second)
	eWant := map[string]string{}
	for _, k := range eKeys {
		eWant[k] = contactOf(k)
		want[k] = ""
	}
	if err := m.verifyReads("n1", eWant); err != nil {
		if time.Now().Before(eExpired) {
			t.Fatalf("records that expire in 2 s, read at once: %v", err)
		}
		t.Logf("records that expire in 2 s were not read back in time: %v", err)
	}
	m.start("n5", "")
	m.kill("n2")
	final := []string{"n1", "n3", "n4", "n5"}
	m.waitSettled(final...)
	settledAt := time.Now()

	// Past every expiry and through at least one anti-entropy round after
	// the last ring change, nothing deleted or expired comes back: not in
	// reads through any node, and in the end not as a live copy on any
	// node either.
	gone := append(slices.Clone(changed), eKeys...)
	until := later(settledAt, later(eExpired, xExpired)).Add(antiEntropyInterval + 2*time.Second)
	var liveCopies map[string][]string
	var staleSeen time.Duration
	rounds := 0
	for i := 0; ; i++ {
		from := final[i%len(final)]
		if err := m.verifyReads(from, want); err != nil {
			t.Fatalf("%v after the last ring change: %v", time.Since(settledAt).Round(time.Millisecond), err)
		}
		liveCopies, _, err = m.copies(final, gone)
		if err != nil {
			t.Fatal(err)
		}
		if len(liveCopies) > 0 {
			staleSeen = time.Since(settledAt)
		}
		rounds++
		if time.Now().After(until) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(liveCopies) > 0 {
		var ex []string
		for k, h := range liveCopies {
			if len(ex) < 5 {
				ex = append(ex, fmt.Sprintf("%s on %v", k, h))
			}
		}
		t.Fatalf("%d deleted or expired keys still have live copies %v after the last ring change: %s",
			len(liveCopies), time.Since(settledAt).Round(time.Millisecond), strings.Join(ex, "; "))
	}
	// The live keys are back to 2 copies; the ring counts nothing else.
	proctest.Eventually(t, 30*time.Second, "2 copies of the live keys, and nothing else", func() error {
		if err := m.exactCopies(final, lKeys, 2); err != nil {
			return err
		}
		items, err := m.items("n4")
		if err != nil {
			return err
		}
		if sum(items) != 2*each {
			return fmt.Errorf("items %v: want %d (2 copies of the %d live keys only)", items, 2*each, each)
		}
		return nil
	})
	_, tombs, err := m.copies(final, dKeys)
	if err != nil {
		t.Fatal(err)
	}
	counts := map[int]int{}
	for _, k := range dKeys {
		counts[len(tombs[k])]++
	}
	seen := "never seen"
	if staleSeen > 0 {
		seen = "last seen " + staleSeen.Round(time.Millisecond).String() + " after it"
	}
	t.Logf("n3 held %d of the deleted or rewritten keys when paused; checked %d times over %v after the last ring change "+
		"(live copies of gone keys: %s); tombstones of deleted keys per number of holders: %v",
		len(held), rounds, time.Since(settledAt).Round(time.Millisecond), seen, counts)
	if counts[0] > 0 {
		t.Errorf("%d deleted keys have no tombstone left on any node", counts[0])
	}
	for i, k := range []string{dKeys[0], xKeys[1], eKeys[2], dKeys[each-1]} {
		lk, err := m.lookup(final[i], k)
		if err != nil {
			t.Fatal(err)
		}
		if len(lk.Holders) != 0 || len(lk.Records) != 0 {
			t.Fatalf("lookup %s: holders %v, records %v: want none", k, lk.Holders, lk.Records)
		}
	}
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// --- 5. concurrent writers converge ------------------------------------------

func TestStoreConcurrentWritersConverge(t *testing.T) {
	m := newMesh(t, "127.0.35.", 3)
	names := []string{"n1", "n2", "n3", "n4"}
	for _, n := range names {
		m.start(n, "")
	}
	m.waitSettled(names...)

	// Every node writes every hot key at once, round after round with no
	// coordination: one record id all writers share, and one of its own.
	// The last round starts only once every earlier write has returned
	// (and the clock has moved on by a millisecond or two), so one of its
	// writes must win the shared record.
	const hot, rounds = 25, 12
	var keys []string
	for i := range hot {
		keys = append(keys, key("hot", i))
	}
	write := func(from, to int) error {
		var wg sync.WaitGroup
		errs := make([]error, len(names))
		for w, via := range names {
			wg.Go(func() {
				for r := from; r < to; r++ {
					var recs []node.RecordPutJSON
					for _, k := range keys {
						shared, _ := json.Marshal(map[string]any{"contact": "sip:shared@" + via, "via": via, "round": r})
						own, _ := json.Marshal(map[string]any{"contact": "sip:own@" + via, "via": via, "round": r})
						recs = append(recs, node.RecordPutJSON{Key: k, ID: "shared", Value: shared},
							node.RecordPutJSON{Key: k, ID: "own-" + via, Value: own})
					}
					ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
					err := m.admin(via).PutRecords(ctx, storeRole, recs)
					cancel()
					if err != nil {
						errs[w] = err
						return
					}
				}
			})
		}
		wg.Wait()
		return errors.Join(errs...)
	}
	if err := write(0, rounds-1); err != nil {
		t.Fatal(err)
	}
	// Versions are hybrid logical clocks with millisecond resolution.
	time.Sleep(3 * time.Millisecond)
	if err := write(rounds-1, rounds); err != nil {
		t.Fatal(err)
	}

	// Every holder's own copy is the same, record for record (value,
	// version, writer), before anything reads through the store.
	wrote := time.Now()
	proctest.Eventually(t, 30*time.Second, "holders' copies identical", func() error {
		return holdersDiffer(m, names, keys)
	})
	t.Logf("holders' copies identical %v after the last write returned", time.Since(wrote).Round(time.Millisecond))

	// lookup through each node: the same holders and the same records, the
	// merge of all writers: each writer's own record at its last round, and
	// one shared record whose value came from the node that stamped it.
	var ref []byte
	for _, n := range names {
		for _, k := range keys {
			lk, err := m.lookup(n, k)
			if err != nil {
				t.Fatal(err)
			}
			if len(lk.Holders) != 3 || !sameSet(lk.Holders, lk.Replicas) {
				t.Fatalf("lookup %s through %s: holders %v, replicas %v", k, n, lk.Holders, lk.Replicas)
			}
			if len(lk.Records) != 1+len(names) {
				t.Fatalf("lookup %s through %s: %d records, want %d: %v", k, n, len(lk.Records), 1+len(names), lk.Records)
			}
			for _, r := range lk.Records {
				id, _ := r["id"].(string)
				switch {
				case id == "shared":
					if r["via"] != r["writer"] || r["round"] != float64(rounds-1) {
						t.Fatalf("lookup %s: shared record %v: want a value of the last round (%d), written through the node that stamped it", k, r, rounds-1)
					}
				case strings.HasPrefix(id, "own-"):
					if r["via"] != strings.TrimPrefix(id, "own-") || r["round"] != float64(rounds-1) {
						t.Fatalf("lookup %s: %s is %v, want the last round (%d) of its writer", k, id, r, rounds-1)
					}
				default:
					t.Fatalf("lookup %s: unexpected record %v", k, r)
				}
			}
			if n == names[0] {
				b, _ := json.Marshal(lk)
				ref = append(ref, b...)
			}
		}
	}
	// The same answer, byte for byte, through every node.
	for _, n := range names[1:] {
		var got []byte
		for _, k := range keys {
			lk, err := m.lookup(n, k)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := json.Marshal(lk)
			got = append(got, b...)
		}
		if !bytes.Equal(got, ref) {
			t.Fatalf("lookup through %s differs from lookup through %s:\n%s\n%s", n, names[0], got, ref)
		}
	}
	t.Logf("%d writers × %d rounds on %d keys: 3 identical copies of each, %d records per key", len(names), rounds, hot, 1+len(names))
}

// holdersDiffer reports a key whose own copies on its holders among names
// are not identical record for record (value, version, writer, expiry), or
// that does not have exactly R holders.
func holdersDiffer(m *mesh, names, keys []string) error {
	copies := map[string]map[string][]*meshpb.Record{}
	for _, n := range names {
		got, err := m.local(n, keys)
		if err != nil {
			return err
		}
		copies[n] = got
	}
	for _, k := range keys {
		var ref []byte
		var refNode string
		holders := 0
		for _, n := range names {
			recs, ok := copies[n][k]
			if !ok {
				continue
			}
			holders++
			b := recordsBytes(recs)
			if ref == nil {
				ref, refNode = b, n
			} else if !bytes.Equal(ref, b) {
				return fmt.Errorf("%s: %s holds %s, %s holds %s", k, refNode, ref, n, b)
			}
		}
		if holders != m.replicas {
			return fmt.Errorf("%s has %d holders, want %d", k, holders, m.replicas)
		}
	}
	return nil
}

// recordsBytes is a canonical form of one node's records of a key.
func recordsBytes(recs []*meshpb.Record) []byte {
	type rec struct {
		ID, Writer       string
		Value            string
		Version          uint64
		Expires, Horizon int64
		Deleted          bool
	}
	out := make([]rec, 0, len(recs))
	for _, r := range recs {
		out = append(out, rec{r.GetId(), r.GetWriter(), string(r.GetValue()), r.GetVersion(), r.GetExpiresUnixNano(), r.GetHorizonUnixNano(), r.GetDeleted()})
	}
	slices.SortFunc(out, func(a, b rec) int { return strings.Compare(a.ID, b.ID) })
	b, _ := json.Marshal(out)
	return b
}
