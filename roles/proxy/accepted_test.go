package proxy

import (
	"net"
	"strings"
	"testing"
	"time"
)

// Once an INVITE's 2xx went upstream, the proxy keeps only the INVITE's
// transaction key: a retransmission of the INVITE is absorbed, neither
// forwarded again (a second fork of the call) nor answered, and the 2xx
// the callee retransmits still reaches the caller (RFC 6026 §8.7).
func TestAcceptedInviteAbsorbsRetransmissions(t *testing.T) {
	callee, caller := newUA(t, "127.0.44.9").conn, newUA(t, "127.0.44.6").conn
	p, addr, _ := startProxy(t, Config{
		Locator: fakeLocator{"bob@example.test": {{URI: "sip:bob@" + callee.LocalAddr().String()}}},
		Users:   fakeUsers{"bob": true},
	})
	dst, _ := net.ResolveUDPAddr("udp", addr)
	inv := strings.ReplaceAll(request("INVITE", "sip:bob@example.test", "sip:alice@example.test",
		"Max-Forwards: 70\r\nContact: <sip:alice@LOCAL>\r\n"), "LOCAL", caller.LocalAddr().String())
	if _, err := caller.WriteTo([]byte(inv), dst); err != nil {
		t.Fatal(err)
	}
	got := received(callee, 300*time.Millisecond)
	if len(got) != 1 || !strings.HasPrefix(got[0], "INVITE ") {
		t.Fatalf("the callee got %d messages, want the INVITE: %q", len(got), got)
	}
	// The callee answers (RFC 3261 §8.2.6: the Vias and Record-Routes as
	// received, a To tag of its own).
	var keep []string
	for _, l := range strings.Split(got[0], "\r\n") {
		for _, h := range []string{"Via: ", "Record-Route: ", "From: ", "Call-ID: ", "CSeq: "} {
			if strings.HasPrefix(l, h) {
				keep = append(keep, l)
			}
		}
		if strings.HasPrefix(l, "To: ") {
			keep = append(keep, l+";tag=callee1")
		}
	}
	ok := "SIP/2.0 200 OK\r\n" + strings.Join(keep, "\r\n") + "\r\nContact: <sip:bob@" + callee.LocalAddr().String() + ">\r\nContent-Length: 0\r\n\r\n"
	if _, err := callee.WriteTo([]byte(ok), dst); err != nil {
		t.Fatal(err)
	}
	answers := func() (finals []string) {
		for _, r := range received(caller, 300*time.Millisecond) {
			if !strings.HasPrefix(r, "SIP/2.0 1") {
				finals = append(finals, strings.SplitN(r, "\r\n", 2)[0])
			}
		}
		return finals
	}
	if got := answers(); len(got) != 1 || got[0] != "SIP/2.0 200 OK" {
		t.Fatalf("the caller got %q, want one 200", got)
	}
	// The transaction ended there, its key remembered instead.
	k := p.accepted.keys
	k.mu.Lock()
	remembered := len(k.cur) + len(k.prev)
	k.mu.Unlock()
	if remembered != 1 {
		t.Fatalf("%d accepted INVITEs remembered, want 1", remembered)
	}

	// The caller's INVITE again, as a retransmission delayed in the
	// network would come: absorbed.
	if _, err := caller.WriteTo([]byte(inv), dst); err != nil {
		t.Fatal(err)
	}
	if got := received(callee, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("the retransmitted INVITE reached the callee again: %q", strings.SplitN(got[0], "\r\n", 2)[0])
	}
	if got := received(caller, 0); len(got) != 0 {
		t.Fatalf("the retransmitted INVITE was answered: %q", strings.SplitN(got[0], "\r\n", 2)[0])
	}
	// The callee's 2xx again, until it gets the ACK: on to the caller.
	if _, err := callee.WriteTo([]byte(ok), dst); err != nil {
		t.Fatal(err)
	}
	if got := answers(); len(got) != 1 || got[0] != "SIP/2.0 200 OK" {
		t.Fatalf("the retransmitted 200 reached the caller as %q, want one 200", got)
	}

	// Another INVITE from the same caller is a new call: forwarded.
	inv2 := strings.ReplaceAll(request("INVITE", "sip:bob@example.test", "sip:alice@example.test",
		"Max-Forwards: 70\r\nContact: <sip:alice@LOCAL>\r\n"), "LOCAL", caller.LocalAddr().String())
	if _, err := caller.WriteTo([]byte(inv2), dst); err != nil {
		t.Fatal(err)
	}
	if got := received(callee, 300*time.Millisecond); len(got) != 1 || !strings.HasPrefix(got[0], "INVITE ") {
		t.Fatalf("a new INVITE: the callee got %d messages, want the INVITE", len(got))
	}
}
