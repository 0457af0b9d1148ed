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
