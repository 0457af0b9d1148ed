package proxy

import (
	"net"
	"strings"
	"testing"
	"time"
)

// An in-dialog BYE over UDP is forwarded by a stateless proxy (RFC 3261
// §16.11): along its route set, with our Route entry removed, a Via whose
// branch is the same for a retransmission, and no 100; the UAS's 200
// comes back to the UAC with our Via taken off.
func TestStatelessBye(t *testing.T) {
	callee, err := net.ListenPacket("udp", "127.0.44.9:0")
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	caller, err := net.ListenPacket("udp", "127.0.44.6:0")
	if err != nil {
		t.Fatal(err)
	}
	defer caller.Close()
	_, addr, _ := startProxy(t, Config{Auth: &fakeAuth{}})
	dst, _ := net.ResolveUDPAddr("udp", addr)

	bye := "BYE sip:bob@" + callee.LocalAddr().String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + caller.LocalAddr().String() + ";branch=z9hG4bK-bye1;rport\r\n" +
		"Route: <sip:" + addr + ";lr>\r\n" +
		"Max-Forwards: 70\r\n" +
		"From: <sip:alice@example.test>;tag=a1\r\nTo: <sip:bob@example.test>;tag=b1\r\n" +
		"Call-ID: bye-1@example.test\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	var forwarded []string
	for range 2 { // the BYE and a retransmission of it
		if _, err := caller.WriteTo([]byte(bye), dst); err != nil {
			t.Fatal(err)
		}
		got := received(callee, 300*time.Millisecond)
		if len(got) != 1 || !strings.HasPrefix(got[0], "BYE ") {
			t.Fatalf("the callee got %d messages, want the BYE: %q", len(got), got)
		}
		forwarded = append(forwarded, got[0])
	}
	fwd := forwarded[0]
	top := strings.SplitN(strings.SplitN(fwd, "Via: ", 2)[1], "\r\n", 2)[0]
	if !strings.Contains(top, addr) || !strings.Contains(top, "branch="+statelessBranchMagic) {
		t.Errorf("top Via %q: want ours with a stateless branch", top)
	}
	if forwarded[1] != fwd {
		t.Errorf("the retransmission was forwarded differently:\n%s\n---\n%s", fwd, forwarded[1])
	}
	if strings.Contains(fwd, "Route:") || !strings.Contains(fwd, "Max-Forwards: 69") {
		t.Errorf("forwarded BYE keeps our Route or Max-Forwards 70:\n%s", fwd)
	}
	if got := received(caller, 0); len(got) != 0 {
		t.Fatalf("the caller got %q before any answer (a stateless proxy sends no 100)", strings.SplitN(got[0], "\r\n", 2)[0])
	}

	// The callee answers (RFC 3261 §8.2.6: the Vias as received).
	var vias []string
	for _, l := range strings.Split(fwd, "\r\n") {
		if strings.HasPrefix(l, "Via: ") {
			vias = append(vias, l)
		}
	}
	ok := "SIP/2.0 200 OK\r\n" + strings.Join(vias, "\r\n") + "\r\n" +
		"From: <sip:alice@example.test>;tag=a1\r\nTo: <sip:bob@example.test>;tag=b1\r\n" +
		"Call-ID: bye-1@example.test\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
	if _, err := callee.WriteTo([]byte(ok), dst); err != nil {
		t.Fatal(err)
	}
	got := received(caller, 300*time.Millisecond)
	if len(got) != 1 || !strings.HasPrefix(got[0], "SIP/2.0 200") {
		t.Fatalf("the caller got %d messages, want the 200: %q", len(got), got)
	}
	if n := strings.Count(got[0], "Via: "); n != 1 || !strings.Contains(got[0], "branch=z9hG4bK-bye1") {
		t.Errorf("the 200 reached the caller with %d Vias, want its own only:\n%s", n, got[0])
	}
}
