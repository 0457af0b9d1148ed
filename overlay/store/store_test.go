package store_test

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
	"github.com/sipmesh/sipmesh/overlay/rpc/rpctest"
	"github.com/sipmesh/sipmesh/overlay/store"
)

// fakeCluster starts n nodes on an in-memory membership.
func fakeCluster(t *testing.T, n int, config func(string) store.Config) (*cluster, *rpctest.Membership) {
	t.Helper()
	members := rpctest.NewMembership(0)
	c := newCluster(t, fakeJoiner(members), config)
	for _, name := range rpctest.Names(n) {
		c.start(name, "dc1")
	}
	return c, members
}

// rawPut writes records straight into one node's copy through the replica
// protocol, as a stale or buggy peer could: the way tests plant old copies.
func rawPut(t *testing.T, c *cluster, from, to, key string, recs ...*meshpb.Record) {
	t.Helper()
	mat := c.node(from).mat
	addr := c.node(to).m.Self().Services[overlay.ServiceRPC]
	if mem, ok := c.node(from).m.Member(to); ok {
		addr = mem.Services[overlay.ServiceRPC]
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(mat.ClientConfig(to, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	_, err = meshpb.NewStoreClient(cc).Put(ctxT(t, 5*time.Second), &meshpb.PutRequest{Role: role, Entries: []*meshpb.Entry{{Key: key, Records: recs}}})
	if err != nil {
		t.Fatalf("raw put to %s: %v", to, err)
	}
}

func values(recs []store.Record) map[string]string {
	out := map[string]string{}
	for _, r := range recs {
		out[r.ID] = string(r.Value)
	}
	return out
}

func TestPutGetFromEveryNode(t *testing.T) {
	c, _ := fakeCluster(t, 3, nil)
	ctx := ctxT(t, 10*time.Second)
	a := c.node("n01")
	for i := range 50 {
		key := fmt.Sprintf("sip:u%d@example.test", i)
		if err := a.store.Put(ctx, key, store.Record{ID: "c1", Value: []byte(key)}); err != nil {
			t.Fatal(err)
		}
		reps := a.store.Replicas(key)
		if len(reps) != 2 {
			t.Fatalf("%s: replicas %v, want 2", key, reps)
		}
		// W=2: both holders have it as soon as Put returns.
		for _, n := range c.alive() {
			has := len(n.store.Local(key)) == 1
			if has != slices.Contains(reps, n.name) {
				t.Fatalf("%s: %s holds it: %v; replicas %v", key, n.name, has, reps)
			}
		}
		for _, n := range c.alive() {
			got, err := n.store.Get(ctx, key)
			if err != nil || len(got) != 1 || string(got[0].Value) != key || got[0].Writer != "n01" || got[0].Version == 0 {
				t.Fatalf("%s: get via %s = %+v, %v", key, n.name, got, err)
			}
		}
		holders, err := c.node("n03").store.Holders(ctx, key)
		if err != nil || !slices.Equal(holders, rpctest.Sorted(reps)) {
			t.Fatalf("%s: holders %v (%v), want %v", key, holders, err, reps)
		}
	}
	for _, n := range c.alive() {
		st, err := a.store.MemberStats(ctx, n.name)
		if err != nil || st.Keys != n.store.Count() {
			t.Fatalf("stats of %s: %+v, %v; it counts %d", n.name, st, err, n.store.Count())
		}
	}
}

// Many single-key reads at once from every node, most of them batched
// with others bound for the same holder (batch.go): each returns its own
// key's records, and only them.
func TestConcurrentReadsGetTheirOwnKeys(t *testing.T) {
	c, _ := fakeCluster(t, 3, nil)
	keys := keysN(300)
	c.writeAll(keys)
	ctx := ctxT(t, time.Minute)
	for _, n := range c.alive() {
		err := forEach(keys, 64, func(k string) error {
			got, err := n.store.Get(ctx, k)
			if err != nil {
				return fmt.Errorf("get %s via %s: %w", k, n.name, err)
			}
			if len(got) != 1 || string(got[0].Value) != "v:"+k {
				return fmt.Errorf("get %s via %s = %v, want its own record", k, n.name, values(got))
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecordsMergeIndividually(t *testing.T) {
	c, _ := fakeCluster(t, 3, nil)
	ctx := ctxT(t, 10*time.Second)
	key := "sip:alice@example.test"
	// Two contacts registered through different nodes: both stay.
	if err := c.node("n01").store.Put(ctx, key, store.Record{ID: "phone", Value: []byte("p1")}); err != nil {
		t.Fatal(err)
	}
	if err := c.node("n02").store.Put(ctx, key, store.Record{ID: "laptop", Value: []byte("l1")}); err != nil {
		t.Fatal(err)
	}
	// A newer version of one replaces only that one.
	if err := c.node("n03").store.Put(ctx, key, store.Record{ID: "phone", Value: []byte("p2")}); err != nil {
		t.Fatal(err)
	}
	// An older version (explicit lower version) loses.
	if err := c.node("n01").store.Put(ctx, key, store.Record{ID: "laptop", Value: []byte("l0"), Version: 1}); err != nil {
		t.Fatal(err)
	}
	got, err := c.node("n02").store.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"phone": "p2", "laptop": "l1"}
	if g := values(got); fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("got %v, want %v", g, want)
	}
}

// cseqMerger orders versions by the number in their value, as the
// registrar orders bindings by CSeq.
var cseqMerger = store.MergerFunc(func(a, b store.Record) bool {
	x, _ := strconv.Atoi(string(a.Value))
	y, _ := strconv.Atoi(string(b.Value))
	return x > y
})

func TestCustomMergerDecides(t *testing.T) {
	c, _ := fakeCluster(t, 3, func(string) store.Config {
		cfg := testConfig()
		cfg.Merger = cseqMerger
		return cfg
	})
	ctx := ctxT(t, 10*time.Second)
	key := "sip:bob@example.test"
	// Written in the order 5, 9, 7: the clock says 7 is newest, the
	// merger says 9 wins.
	for i, v := range []string{"5", "9", "7"} {
		if err := c.alive()[i].store.Put(ctx, key, store.Record{ID: "c", Value: []byte(v)}); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range c.alive() {
		got, err := n.store.Get(ctx, key)
		if err != nil || len(got) != 1 || string(got[0].Value) != "9" {
			t.Fatalf("via %s: %+v, %v; want value 9", n.name, got, err)
		}
	}
}

func TestReadRepairsAStaleHolder(t *testing.T) {
	c, _ := fakeCluster(t, 3, func(string) store.Config {
		cfg := testConfig()
		cfg.AntiEntropyInterval = time.Hour // only the read may repair
		return cfg
	})
	ctx := ctxT(t, 10*time.Second)
	key := "sip:carol@example.test"
	a := c.node("n01")
	if err := a.store.Put(ctx, key, store.Record{ID: "c", Value: []byte("old")}); err != nil {
		t.Fatal(err)
	}
	reps := a.store.Replicas(key)
	fresh, stale := reps[0], reps[1]
	// A newer version reaches only one holder.
	rawPut(t, c, "n01", fresh, key, &meshpb.Record{Id: "c", Value: []byte("new"), Version: 1 << 62, Writer: "n01"})
	if got := values(c.node(stale).store.Local(key)); got["c"] != "old" {
		t.Fatalf("stale holder has %v before the read", got)
	}
	got, err := c.node("n03").store.Get(ctx, key)
	if err != nil || values(got)["c"] != "new" {
		t.Fatalf("read: %+v, %v", got, err)
	}
	rpctest.Eventually(t, 5*time.Second, func() error {
		if got := values(c.node(stale).store.Local(key)); got["c"] != "new" {
			return fmt.Errorf("stale holder %s still has %v", stale, got)
		}
		return nil
	})
}

// bothMemberships runs a test on the in-memory membership and on real
// overlays.
func bothMemberships(t *testing.T, n int, config func(string) store.Config, test func(t *testing.T, c *cluster)) {
	t.Run("memory", func(t *testing.T) {
		c, _ := fakeCluster(t, n, config)
		test(t, c)
	})
	t.Run("overlay", func(t *testing.T) {
		dcs := make([]string, n)
		for i := range dcs {
			dcs[i] = "dc1"
		}
		test(t, overlayCluster(t, dcs, config))
	})
}

func TestExpiredAndDeletedStayGone(t *testing.T) {
	bothMemberships(t, 3, nil, testExpiredAndDeletedStayGone)
}

func testExpiredAndDeletedStayGone(t *testing.T, c *cluster) {
	ctx := ctxT(t, 20*time.Second)
	a := c.node("n01").store
	soon := time.Now().Add(700 * time.Millisecond)
	later := time.Now().Add(time.Hour)
	if err := a.Put(ctx, "sip:exp@example.test", store.Record{ID: "c", Value: []byte("x"), Expires: soon}); err != nil {
		t.Fatal(err)
	}
	if err := a.Put(ctx, "sip:del@example.test", store.Record{ID: "c", Value: []byte("x"), Expires: later}, store.Record{ID: "keep", Value: []byte("k"), Expires: later}); err != nil {
		t.Fatal(err)
	}
	// Shortened: a refresh with a shorter expiry than the version it replaces.
	if err := a.Put(ctx, "sip:short@example.test", store.Record{ID: "c", Value: []byte("long"), Expires: later}); err != nil {
		t.Fatal(err)
	}
	if got, err := a.Get(ctx, "sip:exp@example.test"); err != nil || len(got) != 1 {
		t.Fatalf("before expiry: %+v, %v", got, err)
	}
	// The record as it was before the delete, to plant as a stale copy.
	before := c.node(a.Replicas("sip:del@example.test")[0]).store.Local("sip:del@example.test")
	if err := a.Delete(ctx, "sip:del@example.test", "c"); err != nil {
		t.Fatal(err)
	}
	shortBefore := c.node(a.Replicas("sip:short@example.test")[0]).store.Local("sip:short@example.test")
	if err := a.Put(ctx, "sip:short@example.test", store.Record{ID: "c", Value: []byte("short"), Expires: soon}); err != nil {
		t.Fatal(err)
	}
	got, err := c.node("n02").store.Get(ctx, "sip:del@example.test")
	if err != nil || fmt.Sprint(values(got)) != "map[keep:k]" {
		t.Fatalf("after delete: %+v, %v", got, err)
	}
	rpctest.Eventually(t, 5*time.Second, func() error {
		if got, _ := a.Get(ctx, "sip:exp@example.test"); len(got) != 0 {
			return fmt.Errorf("expired record still served: %+v", got)
		}
		return nil
	})
	// Stale copies come back from every direction: straight to every node
	// (holders and non-holders, which hand them off) and through
	// anti-entropy. None may resurrect.
	stale := func(r store.Record) *meshpb.Record {
		return &meshpb.Record{Id: r.ID, Value: r.Value, Version: r.Version, Writer: r.Writer, ExpiresUnixNano: r.Expires.UnixNano()}
	}
	var delOld, shortOld store.Record
	for _, r := range before {
		if r.ID == "c" {
			delOld = r
		}
	}
	shortOld = shortBefore[0]
	for _, n := range c.alive() {
		rawPut(t, c, "n01", n.name, "sip:del@example.test", stale(delOld))
		rawPut(t, c, "n01", n.name, "sip:short@example.test", stale(shortOld))
		rawPut(t, c, "n01", n.name, "sip:exp@example.test", &meshpb.Record{Id: "c", Value: []byte("x"), Version: 1, Writer: "n01", ExpiresUnixNano: soon.UnixNano()})
	}
	// A new node joins (handoff) and every node runs anti-entropy rounds.
	c.start("n04", "dc1")
	c.waitRing(10 * time.Second)
	c.waitCopies([]string{"sip:del@example.test"}, 2, 10*time.Second)
	c.waitRounds(3)
	for _, n := range c.alive() {
		if got, err := n.store.Get(ctx, "sip:del@example.test"); err != nil || fmt.Sprint(values(got)) != "map[keep:k]" {
			t.Fatalf("via %s, deleted record: %+v, %v", n.name, got, err)
		}
		for _, key := range []string{"sip:exp@example.test", "sip:short@example.test"} {
			if got, err := n.store.Get(ctx, key); err != nil || len(got) != 0 {
				t.Fatalf("via %s, %s resurrected: %+v, %v", n.name, key, got, err)
			}
			if got := n.store.Local(key); len(got) != 0 {
				t.Fatalf("%s holds %s: %+v", n.name, key, got)
			}
		}
	}
}

func TestConcurrentWritersConverge(t *testing.T) {
	bothMemberships(t, 4, nil, testConcurrentWritersConverge)
}

func testConcurrentWritersConverge(t *testing.T, c *cluster) {
	ctx := ctxT(t, 20*time.Second)
	key := "sip:shared@example.test"
	const writers, rounds = 4, 25
	err := forEach(c.alive(), writers, func(n *tnode) error {
		for i := range rounds {
			recs := []store.Record{
				{ID: "same", Value: []byte(fmt.Sprintf("%s-%d", n.name, i))},
				{ID: "own-" + n.name, Value: []byte(strconv.Itoa(i))},
			}
			if err := n.store.Put(ctx, key, recs...); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	holders := c.node("n01").store.Replicas(key)
	rpctest.Eventually(t, 5*time.Second, func() error {
		var first []store.Record
		for i, h := range holders {
			got := c.node(h).store.Local(key)
			if len(got) != writers+1 {
				return fmt.Errorf("%s holds %d records, want %d", h, len(got), writers+1)
			}
			if i == 0 {
				first = got
				continue
			}
			if !slices.EqualFunc(first, got, func(a, b store.Record) bool {
				return a.ID == b.ID && bytes.Equal(a.Value, b.Value) && a.Version == b.Version && a.Writer == b.Writer
			}) {
				return fmt.Errorf("holders differ: %v vs %v", first, got)
			}
		}
		return nil
	})
	got, _ := c.node("n02").store.Get(ctx, key)
	// The winner of "same" is the highest (version, writer) written.
	var max store.Record
	for _, r := range got {
		if r.ID == "same" {
			max = r
		}
		if r.ID != "same" && string(r.Value) != strconv.Itoa(rounds-1) {
			t.Fatalf("record %s = %s, want the last write %d", r.ID, r.Value, rounds-1)
		}
	}
	if !bytes.HasSuffix(max.Value, []byte(fmt.Sprintf("-%d", rounds-1))) {
		t.Fatalf("merged value of the shared record is %s: not any writer's last write", max.Value)
	}
}

func TestCrashRestoresCopies(t *testing.T) {
	c, members := fakeCluster(t, 4, nil)
	keys := keysN(500)
	c.writeAll(keys)
	c.waitCopies(keys, 2, 10*time.Second)
	// n02 crashes and is declared dead at once.
	c.crash("n02")
	_ = members
	took := c.waitCopies(keys, 2, 20*time.Second)
	t.Logf("R copies of %d keys restored %s after the crash", len(keys), took)
	c.readAllFrom(keys)
}

func TestWriteSucceedsWithOneHolderDown(t *testing.T) {
	c, members := fakeCluster(t, 3, nil)
	ctx := ctxT(t, 10*time.Second)
	a := c.node("n01").store
	// Find a key held by n01 and n02, then stop n02 without anyone
	// noticing yet: writes reach every reachable holder and succeed.
	var key string
	for i := 0; ; i++ {
		key = fmt.Sprintf("sip:k%d@example.test", i)
		if r := a.Replicas(key); slices.Contains(r, "n01") && slices.Contains(r, "n02") {
			break
		}
	}
	c.node("n02").srv.Stop()
	if err := a.Put(ctx, key, store.Record{ID: "c", Value: []byte("v")}); err != nil {
		t.Fatalf("put with one holder unreachable: %v", err)
	}
	got, err := c.node("n03").store.Get(ctx, key)
	if err != nil || len(got) != 1 {
		t.Fatalf("read with one holder unreachable: %+v, %v", got, err)
	}
	_ = members
}

func TestAntiEntropyRefillsAnEmptiedNode(t *testing.T) {
	c, _ := fakeCluster(t, 3, nil)
	keys := keysN(300)
	c.writeAll(keys)
	c.waitCopies(keys, 2, 10*time.Second)
	// n02 loses everything and comes back under the same name before
	// anyone noticed: the ring never changes, so no handoff happens; only
	// anti-entropy can give n02 its copies back.
	before := c.node("n02").store.Count()
	c.stop(c.node("n02"))
	c.start("n02", "dc1")
	if got := c.node("n02").store.Count(); got != 0 || before == 0 {
		t.Fatalf("n02 held %d keys before and %d after its restart", before, got)
	}
	took := c.waitCopies(keys, 2, 20*time.Second)
	t.Logf("anti-entropy refilled %d keys on n02 in %s", c.node("n02").store.Count(), took)
}

func TestRingChangesHandOff(t *testing.T) {
	c, _ := fakeCluster(t, 4, func(string) store.Config {
		cfg := testConfig()
		cfg.AntiEntropyInterval = time.Hour // handoff alone
		return cfg
	})
	keys := keysN(400)
	c.writeAll(keys)
	c.waitCopies(keys, 2, 10*time.Second)
	c.crash("n02")
	c.waitCopies(keys, 2, 20*time.Second)
	c.readAllFrom(keys)
	n := c.start("n05", "dc1")
	c.waitCopies(keys, 2, 20*time.Second)
	share := float64(n.store.Count()) / float64(2*len(keys))
	t.Logf("n05 took %d keys, %.2f of the copies (1/4 = 0.25)", n.store.Count(), share)
	if share < 0.1 || share > 0.45 {
		t.Fatalf("the fourth node took %.2f of the copies, want about 1/4", share)
	}
	c.readAllFrom(keys)
}

// A node is alone while the ring has no other node and it is not handing
// keys off from one: the proxy then answers REGISTERs without a worker.
func TestAlone(t *testing.T) {
	c, _ := fakeCluster(t, 1, func(string) store.Config { return testConfig() })
	n1 := c.node("n01")
	c.waitRing(10 * time.Second)
	if !n1.store.Alone() {
		t.Fatal("a one-node store is not alone")
	}
	c.start("n02", "dc1")
	c.waitRing(10 * time.Second)
	if n1.store.Alone() {
		t.Fatal("alone with a second node in the ring")
	}
	c.crash("n02")
	c.waitRing(10 * time.Second)
	if n1.store.Alone() {
		t.Fatal("alone while n02's keys may still be read from the previous ring (HandoffGrace)")
	}
}
