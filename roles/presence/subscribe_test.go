package presence_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/presence"
)

const wait = 10 * time.Second

// checkNotify checks a NOTIFY's dialog, CSeq (greater than *last),
// Subscription-State prefix and tuples ("id=basic", nil: no body).
func checkNotify(t *testing.T, w *ua, n *sip.Request, last *uint32, state string, want []string) {
	t.Helper()
	if n.CallID().Value() != w.callID {
		t.Fatalf("NOTIFY Call-ID %s, want %s", n.CallID().Value(), w.callID)
	}
	if tag, _ := n.From().Params.Get("tag"); tag != w.toTag {
		t.Fatalf("NOTIFY From tag %s, want %s (the 2xx's To tag)", tag, w.toTag)
	}
	if tag, _ := n.To().Params.Get("tag"); tag != w.fromTag {
		t.Fatalf("NOTIFY To tag %s, want %s", tag, w.fromTag)
	}
	if header(n, "Event") != "presence" {
		t.Fatalf("NOTIFY Event %q", header(n, "Event"))
	}
	if c := n.CSeq().SeqNo; c <= *last {
		t.Fatalf("NOTIFY CSeq %d after %d", c, *last)
	} else {
		*last = c
	}
	if ss := header(n, "Subscription-State"); !strings.HasPrefix(ss, state) {
		t.Fatalf("Subscription-State %q, want %q…", ss, state)
	}
	if want == nil {
		if len(n.Body()) != 0 {
			t.Fatalf("NOTIFY has a body, want none:\n%s", n.Body())
		}
		return
	}
	if ct := header(n, "Content-Type"); ct != presence.ContentTypePIDF {
		t.Fatalf("Content-Type %q", ct)
	}
	if got := tuples(t, n.Body()); !sortedEq(got, want) {
		t.Fatalf("tuples %v, want %v\n%s", got, want, n.Body())
	}
}

// A watcher subscribes through one node to a presentity that publishes
// through another; the owner holds the subscription: initial NOTIFY,
// NOTIFY on each change (composition of two devices), refresh, then
// unsubscribe with "terminated".
func TestSubscribeNotifyAcrossNodes(t *testing.T) {
	c := newCluster(t, 3)
	alice, bob := newUA(t, "alice"), newUA(t, "bob")
	key := alice.aor()
	owner := c.owner(key)
	via := c.other(owner)
	pubVia := c.other(via)

	res := bob.subscribe(via.sipAddr, key, 300)
	if res.StatusCode != 200 {
		t.Fatalf("SUBSCRIBE: %d", res.StatusCode)
	}
	if header(res, "Expires") != "300" || res.Contact() == nil {
		t.Fatalf("200 to SUBSCRIBE lacks Expires 300 or Contact: %s", res)
	}
	var last uint32
	checkNotify(t, bob, bob.next(wait), &last, "active;expires=", []string{})

	_, subs := c.records(key)
	if len(subs) != 1 || subs[0].Watcher != bob.aor() || subs[0].LocalCSeq != last || subs[0].RemoteTarget == "" {
		t.Fatalf("stored subscriptions %+v", subs)
	}

	res = alice.publish(pubVia.sipAddr, "", 300, pidf(key, "phone=open"))
	etag := header(res, "SIP-ETag")
	if res.StatusCode != 200 || etag == "" {
		t.Fatalf("PUBLISH: %d etag %q", res.StatusCode, etag)
	}
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{"phone=open"})

	// A second device publishes: the state is both.
	res2 := alice.publish(pubVia.sipAddr, "", 300, pidf(key, "pc=closed"))
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{"phone=open", "pc=closed"})

	// Modify the first.
	res = alice.publish(via.sipAddr, etag, 300, pidf(key, "phone=closed"))
	if res.StatusCode != 200 || header(res, "SIP-ETag") == etag {
		t.Fatalf("modify: %d, etag %q (old %q)", res.StatusCode, header(res, "SIP-ETag"), etag)
	}
	etag = header(res, "SIP-ETag")
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{"phone=closed", "pc=closed"})

	// A refresh changes nothing: no NOTIFY.
	res = alice.publish(pubVia.sipAddr, etag, 300, "")
	if res.StatusCode != 200 {
		t.Fatalf("refresh: %d", res.StatusCode)
	}
	etag = header(res, "SIP-ETag")
	bob.none(300 * time.Millisecond)

	// Remove the second device's publication.
	res = alice.publish(pubVia.sipAddr, header(res2, "SIP-ETag"), 0, "")
	if res.StatusCode != 200 || header(res, "Expires") != "0" {
		t.Fatalf("remove: %d Expires %q", res.StatusCode, header(res, "Expires"))
	}
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{"phone=closed"})

	// Refresh the subscription: 200 and a NOTIFY.
	if res := bob.resubscribe(pubVia.sipAddr, 600); res.StatusCode != 200 || header(res, "Expires") != "600" {
		t.Fatalf("refresh: %d, Expires %q", res.StatusCode, header(res, "Expires"))
	}
	checkNotify(t, bob, bob.next(wait), &last, "active;expires=", []string{"phone=closed"})

	// Unsubscribe.
	if res := bob.resubscribe(via.sipAddr, 0); res.StatusCode != 200 {
		t.Fatalf("unsubscribe: %d", res.StatusCode)
	}
	checkNotify(t, bob, bob.next(wait), &last, "terminated;reason=timeout", []string{"phone=closed"})
	if _, subs := c.records(key); len(subs) != 0 {
		t.Fatalf("subscription still stored after unsubscribe: %+v", subs)
	}
	// Changes no longer reach bob.
	alice.publish(pubVia.sipAddr, etag, 300, pidf(key, "phone=open"))
	bob.none(300 * time.Millisecond)
	// And the dialog is gone.
	if res := bob.resubscribe(via.sipAddr, 60); res.StatusCode != 481 {
		t.Fatalf("refresh after unsubscribe: %d, want 481", res.StatusCode)
	}
}

func TestSubscribeErrors(t *testing.T) {
	c := newCluster(t, 1, presence.WithSubscriptionExpiry(60*time.Second, time.Hour, time.Hour))
	n := c.nodes[0]
	bob := newUA(t, "bob")
	key := "alice@" + "example.test"
	cases := []struct {
		name string
		hdr  sip.Header
		code int
		want string // a header that must be in the response
	}{
		{"unknown event", sip.NewHeader("Event", "dialog"), 489, "Allow-Events"},
		{"no PIDF accepted", sip.NewHeader("Accept", "application/xpidf+xml"), 406, "Accept"},
		{"expiry too brief", sip.NewHeader("Expires", "10"), 423, "Min-Expires"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := bob.subscribe(n.sipAddr, key, 300, tc.hdr)
			if res.StatusCode != tc.code || header(res, tc.want) == "" {
				t.Fatalf("%d (%s: %q), want %d", res.StatusCode, tc.want, header(res, tc.want), tc.code)
			}
		})
	}
	// A dialog the agent never created.
	bob.subscribe(n.sipAddr, key, 300)
	bob.next(wait)
	bob.toTag = "forged"
	if res := bob.resubscribe(n.sipAddr, 300); res.StatusCode != 481 {
		t.Fatalf("unknown dialog: %d, want 481", res.StatusCode)
	}
	// A CSeq that does not grow (RFC 3261 §12.2.2).
	bob2 := newUA(t, "bob2")
	bob2.subscribe(n.sipAddr, key, 300)
	bob2.next(wait)
	bob2.cseq = 0
	if res := bob2.resubscribe(n.sipAddr, 300); res.StatusCode != 500 {
		t.Fatalf("old CSeq: %d, want 500", res.StatusCode)
	}
}

// A fetch (Expires: 0 on a new subscription) gets the state once.
func TestFetch(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	alice, bob := newUA(t, "alice"), newUA(t, "bob")
	alice.publish(n.sipAddr, "", 300, pidf(alice.aor(), "t1=open"))
	if res := bob.subscribe(n.sipAddr, alice.aor(), 0); res.StatusCode != 200 {
		t.Fatalf("fetch: %d", res.StatusCode)
	}
	var last uint32
	checkNotify(t, bob, bob.next(wait), &last, "terminated;reason=timeout", []string{"t1=open"})
	if _, subs := c.records(alice.aor()); len(subs) != 0 {
		t.Fatalf("a fetch stored a subscription: %+v", subs)
	}
}

func TestAuthorization(t *testing.T) {
	t.Run("other domain refused by default", func(t *testing.T) {
		c := newCluster(t, 1)
		eve := newUA(t, "eve")
		eve.presentity = "alice@example.test"
		eve.callID, eve.fromTag, eve.cseq = "x1", "f1", 1
		r := eve.subscribeReq(300, "")
		from := &sip.FromHeader{Address: sip.Uri{Scheme: "sip", User: "eve", Host: "evil.test"}, Params: sip.NewParams()}
		from.Params.Add("tag", "f1")
		r.ReplaceHeader(from)
		if res := eve.do(c.nodes[0].sipAddr, r); res.StatusCode != 403 {
			t.Fatalf("foreign watcher: %d, want 403", res.StatusCode)
		}
	})
	t.Run("pending then allowed on refresh", func(t *testing.T) {
		var allow atomicBool
		auth := presence.AuthorizerFunc(func(_ ctxT, watcher, presentity string) (presence.Decision, error) {
			if allow.Load() {
				return presence.Allow, nil
			}
			return presence.Pending, nil
		})
		c := newCluster(t, 1, presence.WithAuthorizer(auth))
		n := c.nodes[0]
		alice, bob := newUA(t, "alice"), newUA(t, "bob")
		alice.publish(n.sipAddr, "", 300, pidf(alice.aor(), "t=open"))
		if res := bob.subscribe(n.sipAddr, alice.aor(), 300); res.StatusCode != 202 {
			t.Fatalf("pending: %d, want 202", res.StatusCode)
		}
		var last uint32
		checkNotify(t, bob, bob.next(wait), &last, "pending;expires=", nil)
		alice.publish(n.sipAddr, "", 300, pidf(alice.aor(), "u=open"))
		checkNotify(t, bob, bob.next(wait), &last, "pending", nil)
		allow.Store(true)
		if res := bob.resubscribe(n.sipAddr, 300); res.StatusCode != 200 {
			t.Fatalf("refresh once allowed: %d, want 200", res.StatusCode)
		}
		checkNotify(t, bob, bob.next(wait), &last, "active", []string{"t=open", "u=open"})
	})
}

// Subscriptions and publications expire on the owner's sweep.
func TestExpiry(t *testing.T) {
	c := newCluster(t, 2,
		presence.WithSubscriptionExpiry(time.Second, time.Hour, time.Hour),
		presence.WithPublicationExpiry(time.Second, time.Hour, time.Hour),
		presence.WithSweepInterval(100*time.Millisecond))
	alice, bob := newUA(t, "alice"), newUA(t, "bob")
	key := alice.aor()
	n := c.owner(key)
	bob.subscribe(n.sipAddr, key, 3)
	var last uint32
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{})
	alice.publish(n.sipAddr, "", 1, pidf(key, "x=open"))
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{"x=open"})
	// The publication expires after 1 s: the state is empty again.
	start := time.Now()
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{})
	if pubs, _ := c.records(key); len(pubs) != 0 {
		t.Fatalf("expired publication still stored: %+v", pubs)
	}
	// The subscription expires 3 s after it was made.
	checkNotify(t, bob, bob.next(wait), &last, "terminated;reason=timeout", []string{})
	if el := time.Since(start); el > 8*time.Second {
		t.Fatalf("timeout NOTIFY %v after the publication's expiry", el)
	}
	if _, subs := c.records(key); len(subs) != 0 {
		t.Fatalf("expired subscription still stored: %+v", subs)
	}
	// An expired entity-tag is unknown.
	if res := alice.publish(n.sipAddr, "whatever", 60, ""); res.StatusCode != 412 {
		t.Fatalf("refresh of an expired publication: %d, want 412", res.StatusCode)
	}
}

// Removing a presentity ends its subscriptions with reason=noresource.
func TestRemovePresentity(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	alice, bob, carol := newUA(t, "alice"), newUA(t, "bob"), newUA(t, "carol")
	key := alice.aor()
	alice.publish(n.sipAddr, "", 300, pidf(key, "x=open"))
	var lb, lc uint32
	bob.subscribe(n.sipAddr, key, 300)
	checkNotify(t, bob, bob.next(wait), &lb, "active", []string{"x=open"})
	carol.subscribe(n.sipAddr, key, 300)
	checkNotify(t, carol, carol.next(wait), &lc, "active", []string{"x=open"})
	if err := n.agent.Remove(ctxTimeout(t), key); err != nil {
		t.Fatal(err)
	}
	checkNotify(t, bob, bob.next(wait), &lb, "terminated;reason=noresource", nil)
	checkNotify(t, carol, carol.next(wait), &lc, "terminated;reason=noresource", nil)
	if pubs, subs := c.records(key); len(pubs)+len(subs) != 0 {
		t.Fatalf("records left: %+v %+v", pubs, subs)
	}
}

// A watcher answering 481 to a NOTIFY loses its subscription (RFC 6665
// §4.2.2).
func TestNotifyRefusedRemovesSubscription(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	alice, bob := newUA(t, "alice"), newUA(t, "bob")
	key := alice.aor()
	bob.subscribe(n.sipAddr, key, 300)
	bob.next(wait)
	bob.status.Store(481)
	alice.publish(n.sipAddr, "", 300, pidf(key, "x=open"))
	deadline := time.Now().Add(wait)
	for {
		_, subs := c.records(key)
		if len(subs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription still stored after a 481: %+v", subs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Changes while a NOTIFY is in flight are coalesced: the watcher sees
// increasing CSeqs and ends with the last state.
func TestBurstCoalesced(t *testing.T) {
	c := newCluster(t, 1)
	n := c.nodes[0]
	alice, bob := newUA(t, "alice"), newUA(t, "bob")
	key := alice.aor()
	bob.subscribe(n.sipAddr, key, 300)
	var last uint32
	checkNotify(t, bob, bob.next(wait), &last, "active", []string{})
	for i := range 10 {
		if res := alice.publish(n.sipAddr, "", 300, pidf(key, "t"+string(rune('a'+i))+"=open")); res.StatusCode != 200 {
			t.Fatalf("PUBLISH %d: %d", i, res.StatusCode)
		}
	}
	var want []string
	for i := range 10 {
		want = append(want, "t"+string(rune('a'+i))+"=open")
	}
	for {
		nt := bob.next(wait)
		c := nt.CSeq().SeqNo
		if c <= last {
			t.Fatalf("CSeq %d after %d", c, last)
		}
		last = c
		if got := tuples(t, nt.Body()); slices.Equal(sortedCopy(got), sortedCopy(want)) {
			break
		}
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
