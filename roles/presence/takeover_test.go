package presence_test

import (
	"context"
	"encoding/json"
	"net"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/presence"
)

// The owner of a presentity dies mid-subscription: the next owner finds
// the subscription in its replica and sends the next NOTIFY in the same
// dialog with a CSeq above the last one sent.
func TestOwnerDiesSubscriptionContinues(t *testing.T) {
	c := newCluster(t, 3, presence.WithLogger(testLogger(t)))
	alice, bob := newUA(t, "alice"), newUA(t, "bob")
	key := alice.aor()
	owner := c.owner(key)
	entry := c.other(owner)

	if res := bob.subscribe(entry.sipAddr, key, 300); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	var last uint32
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{})
	res := alice.publish(entry.sipAddr, "", 300, pidf(key, "phone=open"))
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{"phone=open"})
	first := bob.callID

	c.crash(owner)
	next := c.owner(key)
	if next == nil || next == owner {
		t.Fatalf("no new owner")
	}
	t.Logf("owner %s died; %s owns %s now; last CSeq %d", owner.name, next.name, key, last)

	res = alice.publish(entry.sipAddr, header(res, "SIP-ETag"), 300, pidf(key, "phone=closed"))
	if res.StatusCode != 200 {
		t.Fatalf("PUBLISH after the owner died: %d", res.StatusCode)
	}
	n := bob.next(wait)
	if n.CallID().Value() != first {
		t.Fatalf("NOTIFY in another dialog")
	}
	checkNotify(t, bob, n, &last, "active", []string{"phone=closed"})
	// Through the entry node (its Record-Route): the bottom Via is the
	// NOTIFY's originator.
	vias := n.GetHeaders("Via")
	if len(vias) != 2 || hostOf(n.Source()) != entry.ip {
		t.Fatalf("NOTIFY from %s with %d Via, want it relayed by the entry node %s", n.Source(), len(vias), entry.ip)
	}
	if v := vias[1].(*sip.ViaHeader); v.Host != next.ip {
		t.Fatalf("NOTIFY originated at %s, want the new owner %s", v.Host, next.ip)
	}
	// The new owner keeps the dialog: refresh and unsubscribe work.
	if res := bob.resubscribe(entry.sipAddr, 0); res.StatusCode != 200 {
		t.Fatalf("unsubscribe via the new owner: %d", res.StatusCode)
	}
	checkNotify(t, bob, bob.next(wait), &last, "terminated", []string{"phone=closed"})
}

// The merge rule keeps the subscription version with the higher CSeq
// whatever order two nodes write in, and a tombstone at the same CSeq.
func TestMergeHigherCSeqWins(t *testing.T) {
	c := newCluster(t, 3)
	key := "alice@example.test"
	sub := func(cseq uint32) []byte {
		b, _ := json.Marshal(presence.Subscription{Kind: presence.KindSubscription, CallID: "c", LocalTag: "l", RemoteTag: "r", LocalCSeq: cseq, Expires: time.Now().Add(time.Hour)})
		return b
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	exp := time.Now().Add(time.Hour)
	a, b := c.nodes[0], c.nodes[1]
	if err := a.rs.Put(ctx, key, presence.Record{ID: "c;l;r", Value: sub(7), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	// Written later (a newer store version) but with a lower CSeq: loses.
	if err := b.rs.Put(ctx, key, presence.Record{ID: "c;l;r", Value: sub(5), Expires: exp}); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.nodes {
		_, subs := c.records(key)
		if len(subs) != 1 || subs[0].LocalCSeq != 7 {
			t.Fatalf("via %s: %+v, want CSeq 7", n.name, subs)
		}
	}
	// A tombstone at the same CSeq wins.
	if err := b.rs.Put(ctx, key, presence.Record{ID: "c;l;r", Value: sub(7), Expires: exp, Deleted: true}); err != nil {
		t.Fatal(err)
	}
	if _, subs := c.records(key); len(subs) != 0 {
		t.Fatalf("tombstone at CSeq 7 lost: %+v", subs)
	}
}

func TestNewer(t *testing.T) {
	sub := func(cseq uint32) []byte {
		b, _ := json.Marshal(presence.Subscription{Kind: presence.KindSubscription, LocalCSeq: cseq})
		return b
	}
	pub, _ := json.Marshal(presence.Publication{Kind: presence.KindPublication})
	cases := []struct {
		name string
		a, b presence.Record
		want bool
	}{
		{"higher cseq, older version", presence.Record{Value: sub(3), Version: 1}, presence.Record{Value: sub(2), Version: 9}, true},
		{"lower cseq, newer version", presence.Record{Value: sub(2), Version: 9}, presence.Record{Value: sub(3), Version: 1}, false},
		{"same cseq, tombstone", presence.Record{Value: sub(3), Version: 1, Deleted: true}, presence.Record{Value: sub(3), Version: 9}, true},
		{"same cseq, newer version", presence.Record{Value: sub(3), Version: 9}, presence.Record{Value: sub(3), Version: 1}, true},
		{"publication, newer version", presence.Record{Value: pub, Version: 9}, presence.Record{Value: pub, Version: 1}, true},
		{"publication, older version", presence.Record{Value: pub, Version: 1}, presence.Record{Value: pub, Version: 9}, false},
	}
	for _, tc := range cases {
		if got := presence.Newer(tc.a, tc.b); got != tc.want {
			t.Errorf("%s: Newer = %v", tc.name, got)
		}
	}
}

func hostOf(addr string) string {
	h, _, _ := net.SplitHostPort(addr)
	return h
}

// After the owner dies, the next owner's sweep finds the subscription in
// its replica and ends it on expiry, in the same dialog.
func TestOwnerDiesExpiryByNextOwner(t *testing.T) {
	c := newCluster(t, 3,
		presence.WithSubscriptionExpiry(time.Second, time.Hour, time.Hour),
		presence.WithSweepInterval(100*time.Millisecond))
	alice, bob := newUA(t, "alice"), newUA(t, "bob")
	key := alice.aor()
	owner := c.owner(key)
	entry := c.other(owner)
	if res := bob.subscribe(entry.sipAddr, key, 2); res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	var last uint32
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{})
	c.crash(owner)
	next := c.owner(key)
	n := bob.next(wait)
	checkNotify(t, bob, n, &last, "terminated;reason=timeout", []string{})
	if v := n.GetHeaders("Via"); len(v) != 2 || v[1].(*sip.ViaHeader).Host != next.ip {
		t.Fatalf("timeout NOTIFY not from the next owner %s: %v", next.ip, v)
	}
}
