package relay_test

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/pion/sdp/v3"

	"github.com/sipmesh/sipmesh/roles/relay"
)

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// Sample bodies: what phones and gateways send.
var samples = map[string][]byte{
	// Audio and video, session-level c=, a=rtcp with port only.
	"audio+video": crlf(`v=0
o=alice 2890844526 2890844527 IN IP4 192.168.1.20
s=-
c=IN IP4 192.168.1.20
t=0 0
m=audio 49170 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:49171
a=sendrecv
m=video 51372/2 RTP/AVP 96
b=AS:512
a=rtpmap:96 H264/90000
a=fmtp:96 profile-level-id=42e01f
`),
	// IPv6, media-level c= only, a=rtcp with an address (RFC 3605).
	"ipv6": crlf(`v=0
o=bob 1 1 IN IP6 2001:db8::2
s=call
t=0 0
m=audio 40000 RTP/AVP 8
c=IN IP6 2001:db8::2
a=rtcp:40003 IN IP6 2001:db8::3
a=ptime:20
`),
	// ICE at session and media level, rtcp-mux, SRTP crypto, and a
	// rejected stream.
	"ice": crlf(`v=0
o=- 4611731400430051336 2 IN IP4 127.0.0.1
s=-
t=0 0
a=ice-lite
a=ice-options:trickle
m=audio 9 RTP/SAVP 111
c=IN IP4 203.0.113.7
a=rtcp:9 IN IP4 0.0.0.0
a=ice-ufrag:F7gI
a=ice-pwd:x9cml/YzichV2+XlhiMu8g
a=candidate:1 1 udp 2122260223 10.0.0.5 54321 typ host
a=candidate:2 1 udp 1686052607 203.0.113.7 61000 typ srflx raddr 10.0.0.5 rport 54321
a=end-of-candidates
a=rtcp-mux
a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR
a=rtpmap:111 opus/48000/2
m=video 0 RTP/SAVP 96
c=IN IP4 203.0.113.7
a=rtpmap:96 VP8/90000
`),
}

var (
	relayA = relay.Endpoint{RTP: netip.MustParseAddrPort("198.51.100.1:40000"), RTCP: netip.MustParseAddrPort("198.51.100.1:40001")}
	relayB = relay.Endpoint{RTP: netip.MustParseAddrPort("198.51.100.1:40010"), RTCP: netip.MustParseAddrPort("198.51.100.1:40011")}
	relay6 = relay.Endpoint{RTP: netip.MustParseAddrPort("[2001:db8::100]:40020"), RTCP: netip.MustParseAddrPort("[2001:db8::100]:40021")}
)

// The exact result for the audio+video sample: c= and m= ports point at
// the relay, a=rtcp follows, the port count is gone, all else is kept.
func TestRewriteSDPGolden(t *testing.T) {
	got, err := relay.RewriteSDP(samples["audio+video"], []relay.Endpoint{relayA, relayB})
	if err != nil {
		t.Fatal(err)
	}
	want := crlf(`v=0
o=alice 2890844526 2890844527 IN IP4 198.51.100.1
s=-
c=IN IP4 198.51.100.1
t=0 0
m=audio 40000 RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=rtcp:40001
a=sendrecv
m=video 40010 RTP/AVP 96
b=AS:512
a=rtpmap:96 H264/90000
a=fmtp:96 profile-level-id=42e01f
`)
	if !bytes.Equal(got, want) {
		t.Fatalf("got\n%s\nwant\n%s", got, want)
	}
}

func TestRewriteSDPIPv6AndICE(t *testing.T) {
	got, err := relay.RewriteSDP(samples["ipv6"], []relay.Endpoint{relay6})
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"m=audio 40020 RTP/AVP 8\r\nc=IN IP6 2001:db8::100\r\n", "a=rtcp:40021 IN IP6 2001:db8::100\r\n", "a=ptime:20\r\n"} {
		if !bytes.Contains(got, []byte(line)) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
	// An IPv4 relay for an IPv6 party: addrtype follows the relay.
	got, err = relay.RewriteSDP(samples["ipv6"], []relay.Endpoint{relayA})
	if err != nil || !bytes.Contains(got, []byte("c=IN IP4 198.51.100.1\r\n")) || !bytes.Contains(got, []byte("a=rtcp:40001 IN IP4 198.51.100.1\r\n")) {
		t.Fatalf("%v\n%s", err, got)
	}

	got, err = relay.RewriteSDP(samples["ice"], []relay.Endpoint{relayA, relayB})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(got, []byte("ice-")) || bytes.Contains(got, []byte("candidate")) {
		t.Errorf("ICE attributes left:\n%s", got)
	}
	for _, line := range []string{"m=audio 40000 RTP/SAVP 111\r\nc=IN IP4 198.51.100.1\r\n", "a=rtcp:40001 IN IP4 198.51.100.1\r\n", "a=rtcp-mux\r\n", "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:", "m=video 0 RTP/SAVP 96\r\nc=IN IP4 198.51.100.1\r\n", "o=- 4611731400430051336 2 IN IP4 198.51.100.1\r\n"} {
		if !bytes.Contains(got, []byte(line)) {
			t.Errorf("missing %q in\n%s", line, got)
		}
	}
}

// Round trip: what RewriteSDP writes, ParseSDP reads back as the relay's
// addresses; attributes other than ICE are kept in order; rewriting again
// changes nothing.
func TestRewriteSDPRoundTrip(t *testing.T) {
	for name, body := range samples {
		t.Run(name, func(t *testing.T) {
			before, err := relay.ParseSDP(body)
			if err != nil {
				t.Fatal(err)
			}
			eps := []relay.Endpoint{relayA, relay6, relayB}[:len(before)]
			out, err := relay.RewriteSDP(body, eps)
			if err != nil {
				t.Fatal(err)
			}
			checkRewritten(t, body, out, eps)
			again, err := relay.RewriteSDP(out, eps)
			if err != nil || !bytes.Equal(again, out) {
				t.Fatalf("rewriting twice differs (%v):\n%s\n%s", err, out, again)
			}
		})
	}
}

// No address of the party that wrote the SDP survives the rewrite.
func TestRewriteSDPHidesParty(t *testing.T) {
	party := map[string][]string{
		"audio+video": {"192.168.1.20"},
		"ipv6":        {"2001:db8::2", "2001:db8::3"},
		"ice":         {"203.0.113.7", "10.0.0.5", "127.0.0.1", "0.0.0.0"},
	}
	for name, body := range samples {
		out, err := relay.RewriteSDP(body, []relay.Endpoint{relayA, relayB})
		if err != nil {
			t.Fatal(err)
		}
		for _, addr := range party[name] {
			if !bytes.Contains(body, []byte(addr)) || bytes.Contains(out, []byte(addr)) {
				t.Errorf("%s: party address %s in the rewritten SDP:\n%s", name, addr, out)
			}
		}
	}
}

// checkRewritten asserts the properties every rewrite must have.
func checkRewritten(t *testing.T, in, out []byte, eps []relay.Endpoint) {
	t.Helper()
	before, err := relay.ParseSDP(in)
	if err != nil {
		t.Fatal(err)
	}
	after, err := relay.ParseSDP(out)
	if err != nil {
		t.Fatalf("rewritten SDP does not parse: %v\n%q", err, out)
	}
	if len(after) != len(before) {
		t.Fatalf("%d m-lines became %d", len(before), len(after))
	}
	for i, m := range after {
		if m.Type != before[i].Type || m.Proto != before[i].Proto || m.RTCPMux != before[i].RTCPMux {
			t.Errorf("m-line %d changed: %+v -> %+v", i, before[i], m)
		}
		if m.ICE {
			t.Errorf("m-line %d still has candidates", i)
		}
		if !slices.ContainsFunc(eps, func(e relay.Endpoint) bool { return e.RTP.Addr() == m.RTP.Addr() }) {
			t.Errorf("m-line %d: connection address %s is not the relay's", i, m.RTP.Addr())
		}
		if before[i].RTP.Port() == 0 {
			if m.RTP.Port() != 0 {
				t.Errorf("rejected m-line %d got port %d", i, m.RTP.Port())
			}
			continue
		}
		if m.RTP != eps[i].RTP {
			t.Errorf("m-line %d: media goes to %s, want the relay %s", i, m.RTP, eps[i].RTP)
		}
		if before[i].RTCP.IsValid() && m.RTCP != eps[i].RTCP && m.RTCP.Port() != eps[i].RTCP.Port() {
			t.Errorf("m-line %d: a=rtcp %s, want %s", i, m.RTCP, eps[i].RTCP)
		}
	}
	var din, dout sdp.SessionDescription
	if din.Unmarshal(in) != nil || dout.Unmarshal(out) != nil {
		t.Fatal("pion cannot read its own output")
	}
	keep := func(attrs []sdp.Attribute) []string {
		var s []string
		for _, a := range attrs {
			if a.Key != "rtcp" && !a.IsICECandidate() && !strings.HasPrefix(a.Key, "ice-") && a.Key != "end-of-candidates" && a.Key != "remote-candidates" {
				s = append(s, a.String())
			}
		}
		return s
	}
	if !slices.Equal(keep(din.Attributes), keep(dout.Attributes)) {
		t.Errorf("session attributes %v became %v", keep(din.Attributes), keep(dout.Attributes))
	}
	for i := range din.MediaDescriptions {
		if a, b := keep(din.MediaDescriptions[i].Attributes), keep(dout.MediaDescriptions[i].Attributes); !slices.Equal(a, b) {
			t.Errorf("m-line %d attributes %v became %v", i, a, b)
		}
		if !slices.Equal(din.MediaDescriptions[i].MediaName.Formats, dout.MediaDescriptions[i].MediaName.Formats) {
			t.Errorf("m-line %d formats changed", i)
		}
	}
	if o, p := din.Origin, dout.Origin; o.Username != p.Username || o.SessionID != p.SessionID || o.SessionVersion != p.SessionVersion {
		t.Errorf("o= identity changed: %+v -> %+v", o, p)
	}
}

func TestRewriteSDPErrors(t *testing.T) {
	if _, err := relay.RewriteSDP(samples["audio+video"], []relay.Endpoint{relayA}); !errors.Is(err, relay.ErrInvalid) {
		t.Errorf("too few endpoints: %v", err)
	}
	if _, err := relay.RewriteSDP([]byte("not sdp"), []relay.Endpoint{relayA}); !errors.Is(err, relay.ErrSDP) || relay.SIPStatus(err) != 488 {
		t.Errorf("garbage: %v", err)
	}
	if _, err := relay.ParseSDP(crlf("v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\nm=audio 4000 RTP/AVP 0\n")); !errors.Is(err, relay.ErrSDP) {
		t.Errorf("no c=: %v", err)
	}
}

func TestParseSDP(t *testing.T) {
	ms, err := relay.ParseSDP(samples["ice"])
	if err != nil {
		t.Fatal(err)
	}
	want := []relay.Media{
		{Type: "audio", Proto: "RTP/SAVP", RTP: netip.MustParseAddrPort("203.0.113.7:9"), RTCP: netip.MustParseAddrPort("0.0.0.0:9"), Family: "IP4", RTCPMux: true, ICE: true},
		{Type: "video", Proto: "RTP/SAVP", RTP: netip.MustParseAddrPort("203.0.113.7:0"), Family: "IP4"},
	}
	if !slices.Equal(ms, want) {
		t.Fatalf("got %+v\nwant %+v", ms, want)
	}
	ms, _ = relay.ParseSDP(samples["audio+video"])
	if p := ms[0].Peer(); p.RTP != netip.MustParseAddrPort("192.168.1.20:49170") || p.RTCP != netip.MustParseAddrPort("192.168.1.20:49171") || p.Family != "IP4" {
		t.Fatalf("peer %+v", p)
	}
}

func FuzzRewriteSDP(f *testing.F) {
	for _, s := range samples {
		f.Add(s)
	}
	f.Add([]byte("v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n"))
	eps := []relay.Endpoint{relayA, relay6, relayB, relayA}
	f.Fuzz(func(t *testing.T, body []byte) {
		before, err := relay.ParseSDP(body)
		if err != nil || len(before) > len(eps) {
			return
		}
		out, err := relay.RewriteSDP(body, eps)
		if err != nil {
			return
		}
		checkRewritten(t, body, out, eps)
		again, err := relay.RewriteSDP(out, eps)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent (%v):\n%q\n%q", err, out, again)
		}
	})
}
