package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Offer/answer through a real Proxy on loopback (127.0.52.0/24) with the
// Media faked: which messages get their SDP rewritten, for which side,
// with which relatch, and when the session is freed. Real relays and
// phones: e2e_relay_test.go.

// fakeMedia rewrites an SDP into a marker naming the party it goes to.
type fakeMedia struct {
	mu      sync.Mutex
	wanted  bool
	err     error
	parties []Party // caller, callees of the last Wanted
	updates []SDPUpdate
	freed   []string
}

func (f *fakeMedia) Wanted(caller Party, callees []Party) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.parties = append([]Party{caller}, callees...)
	return f.wanted
}

func (f *fakeMedia) SDP(_ context.Context, u SDPUpdate) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, u)
	if f.err != nil {
		return nil, f.err
	}
	return []byte(relayedBody(u.From.Other())), nil
}

func (f *fakeMedia) Free(_ context.Context, callID string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.freed = append(f.freed, callID)
}

func (f *fakeMedia) snapshot() ([]SDPUpdate, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]SDPUpdate(nil), f.updates...), append([]string(nil), f.freed...)
}

func relayedBody(to Side) string { return "v=0\r\ns=relayed-to-" + to.String() + "\r\n" }

func sdpOf(ip string, port int) string {
	return "v=0\r\no=- 1 1 IN IP4 " + ip + "\r\ns=-\r\nc=IN IP4 " + ip + "\r\nt=0 0\r\nm=audio " + strconv.Itoa(port) + " RTP/AVP 0\r\n"
}

// ua is a SIP party on one UDP socket.
type ua struct {
	t    *testing.T
	conn net.PacketConn
	buf  []byte
	tag  string // the To tag it answers with
}

func newUA(t *testing.T, ip string) *ua {
	t.Helper()
	c, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &ua{t: t, conn: c, buf: make([]byte, 65535), tag: "b1"}
}

func (u *ua) addr() string { return u.conn.LocalAddr().String() }

func (u *ua) send(to, msg string) {
	u.t.Helper()
	dst, _ := net.ResolveUDPAddr("udp", to)
	if _, err := u.conn.WriteTo([]byte(strings.ReplaceAll(msg, "LOCAL", u.addr())), dst); err != nil {
		u.t.Fatal(err)
	}
}

func (u *ua) sendMsg(to string, m sip.Message) { u.t.Helper(); u.send(to, m.String()) }

// recv returns the next message that want accepts (others are skipped)
// and the address it came from.
func (u *ua) recv(what string, want func(sip.Message) bool) (sip.Message, string) {
	u.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		u.conn.SetReadDeadline(deadline)
		n, from, err := u.conn.ReadFrom(u.buf)
		if err != nil {
			u.t.Fatalf("%s: nothing received: %v", what, err)
		}
		m, err := sip.ParseMessage(append([]byte(nil), u.buf[:n]...))
		if err != nil {
			u.t.Fatalf("%s: %v: %q", what, err, u.buf[:n])
		}
		if want(m) {
			return m, from.String()
		}
	}
}

func isRequest(method sip.RequestMethod) func(sip.Message) bool {
	return func(m sip.Message) bool { r, ok := m.(*sip.Request); return ok && r.Method == method }
}

func isResponse(code int) func(sip.Message) bool {
	return func(m sip.Message) bool { r, ok := m.(*sip.Response); return ok && r.StatusCode == code }
}

// answer builds a response of the callee (To tag "b1", our Contact).
func (u *ua) answer(req *sip.Request, code int, body string) *sip.Response {
	res := sip.NewResponseFromRequest(req, code, sipstatus.ReasonPhrase(code), nil)
	if res.To() != nil && toTag(req) == "" {
		res.To().Params.Add("tag", u.tag) // sipgo made up one
	}
	res.AppendHeader(sip.NewHeader("Contact", "<sip:bob@"+u.addr()+">"))
	if body != "" {
		res.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	}
	res.SetBody([]byte(body))
	return res
}

func invite(id, body string) string {
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\r\n"
	}
	return "INVITE sip:bob@example.test SIP/2.0\r\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bK" + id + ";rport\r\nMax-Forwards: 70\r\n" +
		"From: <sip:alice@elsewhere.test>;tag=a1\r\nTo: <sip:bob@example.test>\r\nCall-ID: " + id + "\r\nCSeq: 1 INVITE\r\n" +
		"Contact: <sip:alice@LOCAL>\r\n" + ct + "Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// inDialog builds a request of the caller along the route set of res
// (RFC 3261 §12.2.1.1: the Record-Route of a 2xx, reversed).
func inDialog(method string, res *sip.Response, cseq int, body string) string {
	var routes []string
	rrs := res.GetHeaders("Record-Route")
	for i := len(rrs) - 1; i >= 0; i-- {
		routes = append(routes, "Route: "+rrs[i].Value()+"\r\n")
	}
	target := res.GetHeader("Contact").(*sip.ContactHeader).Address.String()
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\r\n"
	}
	return method + " " + target + " SIP/2.0\r\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bK" + method + strconv.Itoa(cseq) + res.CallID().Value() + "\r\n" +
		strings.Join(routes, "") + "Max-Forwards: 70\r\nFrom: " + res.From().Value() + "\r\nTo: " + res.To().Value() + "\r\n" +
		"Call-ID: " + res.CallID().Value() + "\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\n" + ct +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// calleeInDialog builds a request of the callee in the dialog of req (the
// INVITE it got): to the caller's Contact along req's Record-Route.
func calleeInDialog(method string, req *sip.Request, cseq int, body string) string {
	var routes []string
	for _, rr := range req.GetHeaders("Record-Route") {
		routes = append(routes, "Route: "+rr.Value()+"\r\n")
	}
	target := req.Contact().Address.String()
	ct := ""
	if body != "" {
		ct = "Content-Type: application/sdp\r\n"
	}
	return method + " " + target + " SIP/2.0\r\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bKb" + method + strconv.Itoa(cseq) + "\r\n" +
		strings.Join(routes, "") + "Max-Forwards: 70\r\nFrom: " + req.To().Value() + ";tag=b1\r\nTo: " + req.From().Value() + "\r\n" +
		"Call-ID: " + req.CallID().Value() + "\r\nCSeq: " + strconv.Itoa(cseq) + " " + method + "\r\nContact: <sip:bob@LOCAL>\r\n" + ct +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

type mediaRig struct {
	p              *Proxy
	addr           string
	media          *fakeMedia
	caller, callee *ua
}

func newMediaRig(t *testing.T, n int) *mediaRig {
	callee := newUA(t, fmt.Sprintf("127.0.52.%d", 20+n))
	m := &fakeMedia{wanted: true}
	logs := &syncBuf{}
	cfg := Config{
		Domain:  "example.test",
		Listen:  []Listen{{Transport: "udp", Addr: fmt.Sprintf("127.0.52.%d:0", n)}},
		Locator: fakeLocator{"bob@example.test": {{URI: "sip:bob@" + callee.addr()}}},
		Mesh:    fakeMesh{peers: map[string]bool{"127.0.52.99": true}},
		Media:   m,
		Logger:  slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.Serve(ctx)
	t.Cleanup(func() {
		cancel()
		p.Close()
		if t.Failed() {
			t.Logf("proxy log:\n%s", logs.String())
		}
	})
	return &mediaRig{p: p, addr: p.Addrs()["udp"], media: m, caller: newUA(t, fmt.Sprintf("127.0.52.%d", 40+n)), callee: callee}
}

// call sends an INVITE with body and returns it as the callee got it.
func (r *mediaRig) call(t *testing.T, id, body string) (*sip.Request, string) {
	t.Helper()
	r.caller.send(r.addr, invite(id, body))
	m, proxyAddr := r.callee.recv("INVITE at the callee", isRequest(sip.INVITE))
	return m.(*sip.Request), proxyAddr
}

func TestMediaOfferAnswer(t *testing.T) {
	r := newMediaRig(t, 1)
	id := "oa-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	inv, via := r.call(t, id, sdpOf("192.0.2.1", 4000))
	if got := string(inv.Body()); got != relayedBody(SideB) {
		t.Fatalf("offer at the callee: %q, want the rewritten one", got)
	}
	// Wanted saw the caller's flow and SDP, and the callee's Contact.
	r.media.mu.Lock()
	ps := r.media.parties
	r.media.mu.Unlock()
	if len(ps) != 2 || ps[0].Source.String() != r.caller.addr() || !ps[0].Datagram ||
		ps[0].Contact.String() != r.caller.addr() || ps[0].SDP == nil || ps[1].Contact.String() != r.callee.addr() {
		t.Errorf("Wanted got %+v", ps)
	}
	r.callee.sendMsg(via, r.callee.answer(inv, 180, sdpOf("198.51.100.1", 5000)))
	m, _ := r.caller.recv("180", isResponse(180))
	if got := string(m.Body()); got != relayedBody(SideA) {
		t.Errorf("early answer at the caller: %q", got)
	}
	ok := r.callee.answer(inv, 200, sdpOf("198.51.100.1", 5000))
	r.callee.sendMsg(via, ok)
	m, _ = r.caller.recv("200", isResponse(200))
	res := m.(*sip.Response)
	if got := string(res.Body()); got != relayedBody(SideA) {
		t.Errorf("answer at the caller: %q", got)
	}
	// The UAS retransmits its 2xx until the ACK comes (RFC 3261
	// §13.3.1.4); a copy that no transaction matches is rewritten alike.
	r.callee.sendMsg(via, ok)
	if m, _ = r.caller.recv("retransmitted 200", isResponse(200)); string(m.Body()) != relayedBody(SideA) {
		t.Errorf("retransmitted answer at the caller: %q", m.Body())
	}
	r.caller.send(r.addr, inDialog("ACK", res, 1, ""))
	r.callee.recv("ACK", isRequest(sip.ACK))

	// The callee re-INVITEs (a new offer, RFC 3264 §8): relatched.
	r.callee.send(via, calleeInDialog("INVITE", inv, 10, sdpOf("198.51.100.2", 5002)))
	m, _ = r.caller.recv("re-INVITE", isRequest(sip.INVITE))
	reinv := m.(*sip.Request)
	if got := string(reinv.Body()); got != relayedBody(SideA) {
		t.Errorf("re-offer at the caller: %q", got)
	}
	reok := sip.NewResponseFromRequest(reinv, 200, "OK", nil)
	reok.AppendHeader(sip.NewHeader("Content-Type", "application/sdp"))
	reok.SetBody([]byte(sdpOf("192.0.2.1", 4000)))
	r.caller.sendMsg(r.addr, reok)
	m, _ = r.callee.recv("200 to the re-INVITE", isResponse(200))
	if got := string(m.Body()); got != relayedBody(SideB) {
		t.Errorf("answer to the re-offer at the callee: %q", got)
	}

	// The caller moves with an UPDATE (RFC 3311): relatched too.
	r.caller.send(r.addr, inDialog("UPDATE", res, 3, sdpOf("192.0.2.7", 4100)))
	m, _ = r.callee.recv("UPDATE", isRequest(sip.UPDATE))
	update := m.(*sip.Request)
	if got := string(update.Body()); got != relayedBody(SideB) {
		t.Errorf("offer in the UPDATE at the callee: %q", got)
	}
	r.callee.sendMsg(via, r.callee.answer(update, 200, sdpOf("198.51.100.2", 5002)))
	if m, _ = r.caller.recv("200 to the UPDATE", isResponse(200)); string(m.Body()) != relayedBody(SideA) {
		t.Errorf("answer to the UPDATE at the caller: %q", m.Body())
	}

	r.caller.send(r.addr, inDialog("BYE", res, 4, ""))
	bye, _ := r.callee.recv("BYE", isRequest(sip.BYE))
	r.callee.sendMsg(via, r.callee.answer(bye.(*sip.Request), 200, ""))
	r.caller.recv("200 to the BYE", isResponse(200))

	updates, freed := r.media.snapshot()
	want := []SDPUpdate{
		{From: SideA},                // the offer
		{From: SideB},                // 180
		{From: SideB},                // 200, the branch of the early media: no relatch
		{From: SideB, Relatch: true}, // re-INVITE
		{From: SideA},                // its answer
		{From: SideA, Relatch: true}, // UPDATE
		{From: SideB},                // its answer
	}
	if len(updates) != len(want) {
		t.Fatalf("SDP updates: %+v, want %d", updates, len(want))
	}
	for i, w := range want {
		if u := updates[i]; u.CallID != id || u.From != w.From || u.Relatch != w.Relatch || u.RewriteOnly {
			t.Errorf("update %d: %+v, want from %s relatch %v", i, u, w.From, w.Relatch)
		}
	}
	if len(freed) != 1 || freed[0] != id {
		t.Errorf("freed %v, want [%s] after the BYE", freed, id)
	}
	if n := r.p.RelayedCalls(); n != 0 {
		t.Errorf("%d calls still anchored", n)
	}
}

// A late offer (RFC 3261 §13.2.1): the offer in the 2xx, the answer in the
// ACK; the callee hangs up.
func TestMediaLateOffer(t *testing.T) {
	r := newMediaRig(t, 2)
	id := "late-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	inv, via := r.call(t, id, "")
	if len(inv.Body()) != 0 {
		t.Fatalf("INVITE without SDP got a body: %q", inv.Body())
	}
	r.callee.sendMsg(via, r.callee.answer(inv, 200, sdpOf("198.51.100.1", 5000)))
	m, _ := r.caller.recv("200", isResponse(200))
	res := m.(*sip.Response)
	if got := string(res.Body()); got != relayedBody(SideA) {
		t.Errorf("offer in the 200 at the caller: %q", got)
	}
	r.caller.send(r.addr, inDialog("ACK", res, 1, sdpOf("192.0.2.1", 4000)))
	m, _ = r.callee.recv("ACK", isRequest(sip.ACK))
	if got := string(m.Body()); got != relayedBody(SideB) {
		t.Errorf("answer in the ACK at the callee: %q", got)
	}
	r.callee.send(via, calleeInDialog("BYE", inv, 11, ""))
	r.caller.recv("BYE", isRequest(sip.BYE))
	retry.Eventually(t, 3*time.Second, func() error {
		if _, freed := r.media.snapshot(); len(freed) != 1 {
			return fmt.Errorf("freed %v after the callee's BYE", freed)
		}
		return nil
	})
}

// A call that fails (486), one the caller cancels, one whose offer the
// relay refuses (488), one from a mesh peer and one the mode does not
// relay.
func TestMediaFreedOnFailure(t *testing.T) {
	r := newMediaRig(t, 3)
	stamp := strconv.FormatInt(time.Now().UnixNano(), 36)

	t.Run("486", func(t *testing.T) {
		id := "busy-" + stamp
		inv, via := r.call(t, id, sdpOf("192.0.2.1", 4000))
		r.callee.sendMsg(via, r.callee.answer(inv, 486, ""))
		r.caller.recv("486", isResponse(486))
		freedOnce(t, r, id)
	})
	t.Run("CANCEL", func(t *testing.T) {
		id := "cancel-" + stamp
		inv, via := r.call(t, id, sdpOf("192.0.2.1", 4000))
		r.callee.sendMsg(via, r.callee.answer(inv, 180, ""))
		r.caller.recv("180", isResponse(180))
		cancel := strings.Replace(strings.Replace(invite(id, ""), "INVITE sip:", "CANCEL sip:", 1), "1 INVITE", "1 CANCEL", 1)
		r.caller.send(r.addr, cancel)
		m, _ := r.callee.recv("CANCEL", isRequest(sip.CANCEL))
		r.callee.sendMsg(via, r.callee.answer(m.(*sip.Request), 200, ""))
		r.callee.sendMsg(via, r.callee.answer(inv, 487, ""))
		r.caller.recv("487", isResponse(487))
		freedOnce(t, r, id)
	})
	t.Run("refused offer", func(t *testing.T) {
		r.media.mu.Lock()
		r.media.err = sipstatus.New(488, "", errors.New("relay: media cannot be relayed as offered"))
		r.media.mu.Unlock()
		defer func() { r.media.mu.Lock(); r.media.err = nil; r.media.mu.Unlock() }()
		r.caller.send(r.addr, invite("refused-"+stamp, sdpOf("192.0.2.1", 4000)))
		r.caller.recv("488", isResponse(488))
		if n := r.p.RelayedCalls(); n != 0 {
			t.Errorf("%d calls anchored after a refused offer", n)
		}
	})
	t.Run("not wanted", func(t *testing.T) {
		r.media.mu.Lock()
		r.media.wanted = false
		r.media.mu.Unlock()
		defer func() { r.media.mu.Lock(); r.media.wanted = true; r.media.mu.Unlock() }()
		body := sdpOf("192.0.2.1", 4000)
		inv, via := r.call(t, "direct-"+stamp, body)
		if string(inv.Body()) != body {
			t.Errorf("a call not relayed got its offer rewritten: %q", inv.Body())
		}
		r.callee.sendMsg(via, r.callee.answer(inv, 486, ""))
		r.caller.recv("486", isResponse(486))
	})
	t.Run("from a mesh peer", func(t *testing.T) {
		// The node where the INVITE entered the mesh anchors the call;
		// the next node passes the SDP as it is.
		peer := newUA(t, "127.0.52.99")
		body := sdpOf("192.0.2.1", 4000)
		peer.send(r.addr, invite("peer-"+stamp, body))
		m, via := r.callee.recv("INVITE from a peer", isRequest(sip.INVITE))
		if string(m.Body()) != body {
			t.Errorf("INVITE from a peer got its offer rewritten: %q", m.Body())
		}
		r.callee.sendMsg(via, r.callee.answer(m.(*sip.Request), 486, ""))
		peer.recv("486", isResponse(486))
	})
	if n := r.p.RelayedCalls(); n != 0 {
		t.Errorf("%d calls still anchored", n)
	}
}

// A relay that ended a session on its own (inactivity) makes the proxy
// forget the call: its BYE frees nothing.
func TestMediaEnded(t *testing.T) {
	r := newMediaRig(t, 4)
	id := "ended-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	inv, via := r.call(t, id, sdpOf("192.0.2.1", 4000))
	r.callee.sendMsg(via, r.callee.answer(inv, 200, sdpOf("198.51.100.1", 5000)))
	m, _ := r.caller.recv("200", isResponse(200))
	res := m.(*sip.Response)
	r.caller.send(r.addr, inDialog("ACK", res, 1, ""))
	r.callee.recv("ACK", isRequest(sip.ACK))
	r.p.MediaEnded(id)
	if n := r.p.RelayedCalls(); n != 0 {
		t.Fatalf("%d calls anchored after MediaEnded", n)
	}
	r.caller.send(r.addr, inDialog("BYE", res, 2, ""))
	bye, _ := r.callee.recv("BYE", isRequest(sip.BYE))
	r.callee.sendMsg(via, r.callee.answer(bye.(*sip.Request), 200, ""))
	r.caller.recv("200 to the BYE", isResponse(200))
	if _, freed := r.media.snapshot(); len(freed) != 0 {
		t.Errorf("freed %v for a call the relay had ended", freed)
	}
}

func freedOnce(t *testing.T, r *mediaRig, id string) {
	t.Helper()
	retry.Eventually(t, 3*time.Second, func() error {
		_, freed := r.media.snapshot()
		n := 0
		for _, f := range freed {
			if f == id {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("%s freed %d times (freed: %v)", id, n, freed)
		}
		return nil
	})
}

// Forking (RFC 3261 §16.7): early media from one branch, the 2xx from the
// other relatches; a 2xx of the losing branch too is rewritten without
// touching the relay, and the BYE of that dialog frees nothing.
func TestMediaFork(t *testing.T) {
	one, two := newUA(t, "127.0.52.25"), newUA(t, "127.0.52.26")
	two.tag = "b2"
	m := &fakeMedia{wanted: true}
	p, err := New(Config{
		Domain:  "example.test",
		Listen:  []Listen{{Transport: "udp", Addr: "127.0.52.5:0"}},
		Locator: fakeLocator{"bob@example.test": {{URI: "sip:bob@" + one.addr()}, {URI: "sip:bob@" + two.addr()}}},
		Mesh:    fakeMesh{},
		Media:   m,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.Serve(ctx)
	t.Cleanup(func() { cancel(); p.Close() })
	addr := p.Addrs()["udp"]
	caller := newUA(t, "127.0.52.45")
	id := "fork-" + strconv.FormatInt(time.Now().UnixNano(), 36)

	caller.send(addr, invite(id, sdpOf("192.0.2.1", 4000)))
	m1, via1 := one.recv("INVITE at branch 1", isRequest(sip.INVITE))
	m2, via2 := two.recv("INVITE at branch 2", isRequest(sip.INVITE))
	inv1, inv2 := m1.(*sip.Request), m2.(*sip.Request)
	one.sendMsg(via1, one.answer(inv1, 183, sdpOf("198.51.100.1", 5000)))
	caller.recv("183", isResponse(183))
	two.sendMsg(via2, two.answer(inv2, 200, sdpOf("198.51.100.2", 5002)))
	res, _ := caller.recv("200 of branch 2", isResponse(200))
	// Branch 1 answers too, as the proxy's CANCEL crosses its 200.
	c, _ := one.recv("CANCEL at branch 1", isRequest(sip.CANCEL))
	one.sendMsg(via1, one.answer(c.(*sip.Request), 200, ""))
	one.sendMsg(via1, one.answer(inv1, 200, sdpOf("198.51.100.1", 5000)))
	lost, _ := caller.recv("200 of branch 1", isResponse(200))
	if string(lost.Body()) != relayedBody(SideA) || toTag(lost) != "b1" {
		t.Errorf("2xx of the losing branch at the caller: tag %q, %q", toTag(lost), lost.Body())
	}
	caller.send(addr, inDialog("BYE", lost.(*sip.Response), 2, ""))
	bye, _ := one.recv("BYE of the losing dialog", isRequest(sip.BYE))
	one.sendMsg(via1, one.answer(bye.(*sip.Request), 200, ""))
	caller.recv("200 to that BYE", isResponse(200))
	if _, freed := m.snapshot(); len(freed) != 0 {
		t.Errorf("the BYE of the losing dialog freed %v", freed)
	}
	caller.send(addr, inDialog("BYE", res.(*sip.Response), 3, ""))
	bye, _ = two.recv("BYE", isRequest(sip.BYE))
	two.sendMsg(via2, two.answer(bye.(*sip.Request), 200, ""))
	caller.recv("200 to the BYE", isResponse(200))

	updates, freed := m.snapshot()
	want := []SDPUpdate{{From: SideA}, {From: SideB}, {From: SideB, Relatch: true}, {From: SideB, RewriteOnly: true}}
	if len(updates) != len(want) {
		t.Fatalf("SDP updates %+v, want %d", updates, len(want))
	}
	for i, w := range want {
		if u := updates[i]; u.From != w.From || u.Relatch != w.Relatch || u.RewriteOnly != w.RewriteOnly {
			t.Errorf("update %d: %+v, want %+v", i, u, w)
		}
	}
	if len(freed) != 1 || freed[0] != id {
		t.Errorf("freed %v, want [%s]", freed, id)
	}
}
