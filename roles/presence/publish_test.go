package presence_test

import (
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/presence"
)

// The life of a publication (RFC 3903 §6) and what the store holds at
// each step.
func TestPublishLifecycle(t *testing.T) {
	c := newCluster(t, 2)
	alice := newUA(t, "alice")
	key := alice.aor()
	n := c.nodes[0]

	res := alice.publish(n.sipAddr, "", 7200*10, pidf(key, "a=open"))
	e1 := header(res, "SIP-ETag")
	if res.StatusCode != 200 || e1 == "" || header(res, "Expires") != "7200" {
		t.Fatalf("initial: %d, SIP-ETag %q, Expires %q (want 200, a tag, 7200: the maximum)", res.StatusCode, e1, header(res, "Expires"))
	}
	pubs, _ := c.records(key)
	if len(pubs) != 1 || pubs[0].ETag != e1 || len(tuples(t, []byte(pubs[0].PIDF))) != 1 {
		t.Fatalf("stored %+v", pubs)
	}

	// Refresh: a new entity-tag, the old one is gone, the body kept.
	res = alice.publish(n.sipAddr, e1, 120, "")
	e2 := header(res, "SIP-ETag")
	if res.StatusCode != 200 || e2 == "" || e2 == e1 || header(res, "Expires") != "120" {
		t.Fatalf("refresh: %d, SIP-ETag %q (old %q), Expires %q", res.StatusCode, e2, e1, header(res, "Expires"))
	}
	if res := alice.publish(n.sipAddr, e1, 120, ""); res.StatusCode != 412 {
		t.Fatalf("refresh with the replaced tag: %d, want 412", res.StatusCode)
	}
	pubs, _ = c.records(key)
	if len(pubs) != 1 || pubs[0].ETag != e2 || !sortedEq(tuples(t, []byte(pubs[0].PIDF)), []string{"a=open"}) {
		t.Fatalf("after refresh stored %+v", pubs)
	}
	if left := time.Until(pubs[0].Expires); left < 110*time.Second || left > 121*time.Second {
		t.Fatalf("refreshed publication expires in %v, want 120 s", left)
	}

	// Modify.
	res = alice.publish(c.nodes[1].sipAddr, e2, 120, pidf(key, "a=closed"))
	e3 := header(res, "SIP-ETag")
	if res.StatusCode != 200 || e3 == "" || e3 == e2 {
		t.Fatalf("modify: %d %q", res.StatusCode, e3)
	}
	pubs, _ = c.records(key)
	if len(pubs) != 1 || !sortedEq(tuples(t, []byte(pubs[0].PIDF)), []string{"a=closed"}) {
		t.Fatalf("after modify stored %+v", pubs)
	}

	// Remove.
	res = alice.publish(n.sipAddr, e3, 0, "")
	if res.StatusCode != 200 || header(res, "Expires") != "0" {
		t.Fatalf("remove: %d Expires %q", res.StatusCode, header(res, "Expires"))
	}
	if pubs, _ = c.records(key); len(pubs) != 0 {
		t.Fatalf("after remove stored %+v", pubs)
	}
	if res := alice.publish(n.sipAddr, e3, 60, ""); res.StatusCode != 412 {
		t.Fatalf("refresh of a removed publication: %d, want 412", res.StatusCode)
	}
}

func TestPublishErrors(t *testing.T) {
	c := newCluster(t, 1)
	alice := newUA(t, "alice")
	key := alice.aor()
	n := c.nodes[0]
	ct := func(v string) sip.Header { h := sip.ContentTypeHeader(v); return &h }
	cases := []struct {
		name       string
		etag       string
		expires    int
		body       string
		hdrs       []sip.Header
		code       int
		wantHeader string
	}{
		{"unknown entity-tag", "nosuchtag", 60, "", nil, 412, ""},
		{"unknown entity-tag with body", "nosuchtag", 60, pidf(key, "a=open"), nil, 412, ""},
		{"event dialog", "", 60, pidf(key, "a=open"), []sip.Header{sip.NewHeader("Event", "dialog")}, 489, "Allow-Events"},
		{"no event", "", 60, pidf(key, "a=open"), []sip.Header{sip.NewHeader("Event", "")}, 489, "Allow-Events"},
		{"not PIDF", "", 60, "hello", []sip.Header{ct("text/plain")}, 415, "Accept"},
		{"broken PIDF", "", 60, "<presence", nil, 400, ""},
		{"other XML", "", 60, `<foo xmlns="urn:x"/>`, nil, 400, ""},
		{"expiry too brief", "", 10, pidf(key, "a=open"), nil, 423, "Min-Expires"},
		{"initial without body", "", 60, "", nil, 400, ""},
		{"for someone else", "", 60, pidf(key, "a=open"), []sip.Header{&sip.FromHeader{Address: presURI("mallory@example.test"), Params: sip.HeaderParams{{K: "tag", V: "m1"}}}}, 403, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := alice.publish(n.sipAddr, tc.etag, tc.expires, tc.body, tc.hdrs...)
			if res.StatusCode != tc.code {
				t.Fatalf("%d %s, want %d", res.StatusCode, res.Reason, tc.code)
			}
			if tc.wantHeader != "" && header(res, tc.wantHeader) == "" {
				t.Fatalf("%d without %s", res.StatusCode, tc.wantHeader)
			}
			if tc.code == 489 && header(res, "Allow-Events") != presence.EventPresence {
				t.Fatalf("Allow-Events %q", header(res, "Allow-Events"))
			}
		})
	}
	if pubs, _ := c.records(key); len(pubs) != 0 {
		t.Fatalf("refused PUBLISHes stored %+v", pubs)
	}
}

func TestHandles(t *testing.T) {
	mk := func(m sip.RequestMethod, event string) *sip.Request {
		r := sip.NewRequest(m, presURI("alice@example.test"))
		if event != "" {
			r.AppendHeader(sip.NewHeader("Event", event))
		}
		return r
	}
	cases := []struct {
		req  *sip.Request
		want bool
	}{
		{mk(sip.PUBLISH, "presence"), true},
		{mk(sip.PUBLISH, "dialog"), true}, // answered 489 by the agent
		{mk(sip.SUBSCRIBE, "presence"), true},
		{mk(sip.SUBSCRIBE, "Presence;id=4"), true},
		{mk(sip.SUBSCRIBE, "dialog"), false},
		{mk(sip.SUBSCRIBE, "message-summary"), false},
		{mk(sip.NOTIFY, "presence"), false},
		{mk(sip.MESSAGE, ""), false},
	}
	for _, tc := range cases {
		if got := presence.Handles(tc.req); got != tc.want {
			t.Errorf("%s Event %q: Handles = %v", tc.req.Method, header(tc.req, "Event"), got)
		}
	}
}
