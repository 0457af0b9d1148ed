package sipmsg

import (
	"slices"
	"testing"

	"github.com/emiago/sipgo/sip"
)

func TestHeaderLookup(t *testing.T) {
	msg, err := sip.ParseMessage([]byte("REGISTER sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n" +
		"path: <sip:a@192.0.2.9;lr>\r\n" +
		"From: <sip:alice@example.test>;tag=1\r\nTo: <sip:alice@example.test>\r\n" +
		"Call-ID: c1\r\nCSeq: 1 REGISTER\r\n" +
		"PATH: <sip:b@192.0.2.8;lr>\r\nUser-Agent: test\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	var paths []string
	for h := range Headers(req, "Path") {
		paths = append(paths, h.Value())
	}
	if want := []string{"<sip:a@192.0.2.9;lr>", "<sip:b@192.0.2.8;lr>"}; !slices.Equal(paths, want) {
		t.Fatalf("Path fields %q, want %q", paths, want)
	}
	if h := Header(req, "user-agent"); h == nil || h.Value() != "test" {
		t.Fatalf("User-Agent: %v", h)
	}
	if h := Header(req, "Expires"); h != nil {
		t.Fatalf("Expires: %v, want none", h)
	}
	// Early stop of the iteration.
	n := 0
	for range Headers(req, "Path") {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("break after the first: %d", n)
	}
	// The point of both: no allocation, where sipgo's lookups lower-case
	// every name they pass.
	allocs := testing.AllocsPerRun(100, func() {
		for h := range Headers(req, "Path") {
			_ = h
		}
		_ = Header(req, "Supported")
	})
	if allocs != 0 {
		t.Fatalf("%.0f allocations per lookup, want 0", allocs)
	}
	if sipgo := testing.AllocsPerRun(100, func() { _ = req.GetHeader("Supported") }); sipgo == 0 {
		t.Logf("sipgo's GetHeader no longer allocates: Header could go")
	}
}

func TestTransport(t *testing.T) {
	for in, want := range map[string]string{"UDP": "udp", "udp": "udp", "Tls": "tls", "WSS": "wss", "SCTP": "sctp", "QUIC": "quic", "": ""} {
		if got := Transport(in); got != want {
			t.Errorf("Transport(%q) = %q, want %q", in, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = Transport("UDP") }); n != 0 {
		t.Errorf("Transport(\"UDP\") allocates %v times", n)
	}
}
