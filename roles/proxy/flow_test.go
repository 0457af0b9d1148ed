package proxy

import "testing"

// Flow tokens round-trip, and a token that was not issued by this key (a
// forged or altered one) is refused: RFC 5626 §5.2, an edge proxy must not
// become an open relay to addresses named in URIs.
func TestFlowTokens(t *testing.T) {
	k := &flowKeys{key: []byte("0123456789abcdef0123456789abcdef")}
	f := flow{transport: "tcp", remote: "192.0.2.7:40123"}
	tok := k.token(f)
	got, ok := k.parse(tok)
	if !ok || got != f {
		t.Fatalf("parse(%q) = %v, %v", tok, got, ok)
	}
	other := &flowKeys{key: []byte("another key, another node.......")}
	forged := other.token(flow{transport: "udp", remote: "198.51.100.1:5060"})
	for _, bad := range []string{forged, tok[:len(tok)-1] + "A", "ft-", "ft-abc", "alice", tok + "x"} {
		if f, ok := k.parse(bad); ok {
			t.Errorf("parse(%q) accepted: %v", bad, f)
		}
	}
}

// A flow's token is remembered with the datagram source it came from, for
// the proxy that signed it only, and is the token it would sign; a request
// whose flow is not that source's is signed on its own.
func TestFlowTokenRemembered(t *testing.T) {
	p := &Proxy{flows: &flowKeys{key: []byte("0123456789abcdef0123456789abcdef")}}
	src := &peerAddr{text: "192.0.2.7:40123"}
	in := &inbound{flow: flow{transport: "udp", remote: src.text}, source: src}
	tok := p.flowToken(in)
	if want := p.flows.token(in.flow); tok != want {
		t.Fatalf("flowToken = %q, want %q", tok, want)
	}
	if again := p.flowToken(in); again != tok || src.token.Load() == nil {
		t.Fatalf("second flowToken = %q (remembered %v), want %q", again, src.token.Load() != nil, tok)
	}
	other := &Proxy{flows: &flowKeys{key: []byte("another key, another node.......")}}
	if got := other.flowToken(in); got != other.flows.token(in.flow) {
		t.Fatalf("another proxy's flowToken = %q: the first one's token", got)
	}
	moved := &inbound{flow: flow{transport: "udp", remote: "198.51.100.1:5060"}, source: src}
	if got, want := p.flowToken(moved), p.flows.token(moved.flow); got != want {
		t.Fatalf("flowToken of another flow from the source = %q, want %q", got, want)
	}
}
