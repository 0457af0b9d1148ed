package proxy

import (
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// fakeAuth challenges a request without Proxy-Authorization with a fresh
// nonce each time and takes any credentials as alice's.
type fakeAuth struct{ nonces atomic.Int64 }

func (a *fakeAuth) Verify(_ context.Context, req *sip.Request, _ bool) (string, error) {
	if sipmsg.Header(req, "Proxy-Authorization") != nil {
		return "alice", nil
	}
	nonce := strconv.FormatInt(a.nonces.Add(1), 10)
	return "", sipstatus.ProxyAuthenticationRequired([]sip.Header{
		sip.NewHeader("Proxy-Authenticate", `Digest realm="example.test", nonce="`+nonce+`", qop="auth"`)},
		errors.New("no credentials"))
}

// received collects what arrives on conn until quiet for wait.
func received(conn net.PacketConn, wait time.Duration) []string {
	var out []string
	buf := make([]byte, 65535)
	for {
		conn.SetReadDeadline(time.Now().Add(wait))
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return out
		}
		out = append(out, string(buf[:n]))
	}
}

// response reads a response the proxy sent.
func response(t *testing.T, data string) *sip.Response {
	t.Helper()
	m, err := sip.ParseMessage([]byte(data))
	res, ok := m.(*sip.Response)
	if err != nil || !ok {
		t.Fatalf("not a response (%v):\n%s", err, data)
	}
	return res
}

func challengeNonce(t *testing.T, res string) string {
	t.Helper()
	h := sipmsg.Header(response(t, res), "Proxy-Authenticate")
	if h == nil {
		t.Fatalf("407 without Proxy-Authenticate:\n%s", res)
	}
	_, nonce, _ := strings.Cut(h.Value(), "nonce=")
	return nonce
}

// A subscriber's INVITE without credentials gets its 407 from a stateless
// UAS (RFC 3261 §8.2.7): no 100 Trying, the same To tag for every copy of
// the request, and its ACK ignored rather than routed to the callee. What
// the stateful path answers otherwise still gets that answer.
func TestStatelessChallenge(t *testing.T) {
	callee, err := net.ListenPacket("udp", "127.0.44.9:0")
	if err != nil {
		t.Fatal(err)
	}
	defer callee.Close()
	_, addr, _ := startProxy(t, Config{
		Auth:    &fakeAuth{},
		Locator: fakeLocator{"bob@example.test": {{URI: "sip:bob@" + callee.LocalAddr().String()}}},
		Users:   fakeUsers{"bob": true},
		Mesh:    fakeMesh{peers: map[string]bool{"127.0.44.7": true}},
	})
	dst, _ := net.ResolveUDPAddr("udp", addr)
	phone := func(ip string) net.PacketConn {
		c, err := net.ListenPacket("udp", ip+":0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := func(c net.PacketConn, msg string) {
		if _, err := c.WriteTo([]byte(strings.ReplaceAll(msg, "LOCAL", c.LocalAddr().String())), dst); err != nil {
			t.Fatal(err)
		}
	}
	alice := phone("127.0.44.6")
	inv := request("INVITE", "sip:bob@example.test", "sip:alice@example.test", "Max-Forwards: 70\r\nContact: <sip:alice@LOCAL>\r\n")

	send(alice, inv)
	send(alice, inv) // a retransmission: answered again, with the same tag
	got := received(alice, 300*time.Millisecond)
	if len(got) != 2 {
		t.Fatalf("INVITE sent twice: got %d responses, want two 407s: %q", len(got), got)
	}
	var tags [2]string
	for i, res := range got {
		r := response(t, res)
		if r.StatusCode != 407 {
			t.Fatalf("got %q, want 407 and no 100 Trying", strings.SplitN(res, "\r\n", 2)[0])
		}
		tags[i] = toTag(r)
	}
	tag := tags[0]
	if !strings.HasPrefix(tag, challengeTagPrefix) || tags[1] != tag {
		t.Fatalf("To tags %q and %q: want one tag starting %q", tag, tags[1], challengeTagPrefix)
	}
	if n1, n2 := challengeNonce(t, got[0]), challengeNonce(t, got[1]); n1 == n2 {
		t.Errorf("both 407s carry nonce %q: the second was not made afresh", n1)
	}

	// The ACK of the 407 (§17.1.1.3: the INVITE's branch, the 407's To).
	ack := strings.Replace(strings.Replace(inv, "INVITE", "ACK", 2), "To: <sip:bob@example.test>", "To: <sip:bob@example.test>;tag="+tag, 1)
	send(alice, ack)
	if got := received(callee, 300*time.Millisecond); len(got) != 0 {
		t.Fatalf("the ACK of a stateless 407 reached the callee: %q", strings.SplitN(got[0], "\r\n", 2)[0])
	}
	if got := received(alice, 0); len(got) != 0 {
		t.Fatalf("the ACK of a stateless 407 was answered: %q", strings.SplitN(got[0], "\r\n", 2)[0])
	}

	// What is not challenged statelessly.
	cases := []struct {
		name, from, msg, want string
	}{
		{"Max-Forwards exhausted", "127.0.44.6", strings.Replace(inv, "Max-Forwards: 70", "Max-Forwards: 0", 1), "483"},
		{"credentials", "127.0.44.6", strings.Replace(inv, "Max-Forwards: 70", "Max-Forwards: 70\r\nProxy-Authorization: Digest x=y", 1), "INVITE"},
		{"a mesh peer", "127.0.44.7", inv, "INVITE"},
	}
	for _, c := range cases {
		from := phone(c.from)
		send(from, strings.ReplaceAll(c.msg, "z9hG4bK", "z9hG4bK"+strconv.Itoa(len(c.name))))
		if c.want == "INVITE" {
			fwd := received(callee, 500*time.Millisecond)
			if len(fwd) == 0 || !strings.HasPrefix(fwd[0], "INVITE ") {
				t.Errorf("%s: the callee got %d messages, want the INVITE", c.name, len(fwd))
			}
			continue
		}
		res := received(from, 300*time.Millisecond)
		if len(res) == 0 || !strings.HasPrefix(res[len(res)-1], "SIP/2.0 "+c.want) {
			t.Errorf("%s: got %d responses, want %s last", c.name, len(res), c.want)
		}
	}
}
