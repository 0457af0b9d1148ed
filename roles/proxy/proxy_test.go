package proxy

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// Table tests against a real Proxy on a loopback UDP socket
// (127.0.44.0/24), with the location service and the mesh faked.

type fakeLocator map[string][]Target

func (f fakeLocator) Locate(_ context.Context, aor string) ([]Target, error) { return f[aor], nil }

type fakeUsers map[string]bool

func (f fakeUsers) Known(_ context.Context, user, _ string) (bool, error) { return f[user], nil }

type fakeMesh struct {
	peers map[string]bool
	alone bool
}

func (m fakeMesh) IsPeer(ip string) bool                { return m.peers[ip] }
func (m fakeMesh) RegistrarAddr(string) (string, error) { return "", context.Canceled }
func (m fakeMesh) Alone() bool                          { return m.alone }

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func startProxy(t *testing.T, cfg Config) (*Proxy, string, *syncBuf) {
	t.Helper()
	logs := &syncBuf{}
	cfg.Domain = "example.test"
	if cfg.Listen == nil {
		cfg.Listen = []Listen{{Transport: "udp", Addr: "127.0.44.1:0"}}
	}
	if cfg.Locator == nil {
		cfg.Locator = fakeLocator{}
	}
	if cfg.Mesh == nil {
		cfg.Mesh = fakeMesh{}
	}
	cfg.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	p, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.Serve(ctx)
	t.Cleanup(func() { cancel(); p.Close() })
	return p, p.Addrs()["udp"], logs
}

// roundTrip sends msg from local and returns the first final response.
func roundTrip(t *testing.T, conn net.PacketConn, to, msg string) string {
	t.Helper()
	dst, _ := net.ResolveUDPAddr("udp", to)
	msg = strings.ReplaceAll(msg, "LOCAL", conn.LocalAddr().String())
	buf := make([]byte, 65535)
	for attempt := 0; attempt < 3; attempt++ {
		if _, err := conn.WriteTo([]byte(msg), dst); err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			if res := string(buf[:n]); !strings.HasPrefix(res, "SIP/2.0 1") {
				return res
			}
		}
	}
	return ""
}

func request(method, ruri, from string, extra ...string) string {
	id := strconv.FormatInt(time.Now().UnixNano(), 36)
	return method + " " + ruri + " SIP/2.0\r\nVia: SIP/2.0/UDP LOCAL;branch=z9hG4bK" + id + "\r\n" +
		"From: <" + from + ">;tag=" + id + "\r\nTo: <" + ruri + ">\r\nCall-ID: " + id + "\r\nCSeq: 1 " + method + "\r\n" +
		strings.Join(extra, "") + "Content-Length: 0\r\n\r\n"
}

func TestProxyAnswers(t *testing.T) {
	p, addr, _ := startProxy(t, Config{
		Locator: fakeLocator{"bob@example.test": {{URI: "sip:bob@127.0.44.9:5999"}}},
		Users:   fakeUsers{"carol": true, "bob": true},
	})
	conn, err := net.ListenPacket("udp", "127.0.44.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	host, port, _ := net.SplitHostPort(addr)
	self := "sip:" + host + ":" + port

	// A request that already went through us with the same hash is a loop.
	loopReq := request("MESSAGE", "sip:dave@example.test", "sip:x@elsewhere.test", "Max-Forwards: 70\r\n")
	parsed, err := sip.ParseMessage([]byte(strings.ReplaceAll(loopReq, "LOCAL", "127.0.44.2:1")))
	if err != nil {
		t.Fatal(err)
	}
	ourVia := "Via: SIP/2.0/UDP " + addr + ";branch=" + branchMagic + loopHash(parsed.(*sip.Request)) + ".x\r\n"
	loopReq = strings.Replace(loopReq, "From:", ourVia+"From:", 1)

	cases := []struct {
		name, msg, want string
	}{
		{"OPTIONS to the node", request("OPTIONS", self, "sip:x@elsewhere.test"), "200"},
		{"OPTIONS to the domain", request("OPTIONS", "sip:example.test", "sip:x@elsewhere.test"), "200"},
		{"Max-Forwards exhausted", request("MESSAGE", "sip:bob@example.test", "sip:x@elsewhere.test", "Max-Forwards: 0\r\n"), "483"},
		{"unknown user", request("MESSAGE", "sip:nobody@example.test", "sip:x@elsewhere.test"), "404"},
		{"known user without binding", request("MESSAGE", "sip:carol@example.test", "sip:x@elsewhere.test"), "480"},
		{"foreign domain, no relaying", request("MESSAGE", "sip:eve@elsewhere.test", "sip:x@elsewhere.test"), "403"},
		{"loop", loopReq, "482"},
		{"no Call-ID", strings.Replace(request("OPTIONS", self, "sip:x@elsewhere.test"), "Call-ID:", "X-Call-ID:", 1), "400"},
		{"CANCEL matching nothing", request("CANCEL", "sip:bob@example.test", "sip:x@elsewhere.test"), "481"},
		// In a dialog (To tag) to a user of the domain without this
		// node's Route: not a dialog through here, whether the user has
		// a binding or not (no location service, no DNS).
		{"in-dialog without our Route", strings.Replace(request("BYE", "sip:bob@example.test", "sip:x@elsewhere.test"), "To: <sip:bob@example.test>", "To: <sip:bob@example.test>;tag=t1", 1), "481"},
		{"in-dialog INVITE without our Route", strings.Replace(request("INVITE", "sip:bob@example.test", "sip:x@elsewhere.test"), "To: <sip:bob@example.test>", "To: <sip:bob@example.test>;tag=t1", 1), "481"},
		{"in-dialog without our Route, no binding", strings.Replace(request("BYE", "sip:carol@example.test", "sip:x@elsewhere.test"), "To: <sip:carol@example.test>", "To: <sip:carol@example.test>;tag=t1", 1), "481"},
		// With our Route, an AOR of the domain as the remote target: the
		// location service (404 for an unknown user), not the DNS.
		{"in-dialog via our Route to an AOR", strings.Replace(request("BYE", "sip:nobody@example.test", "sip:x@elsewhere.test", "Route: <"+self+";lr>\r\n"), "To: <sip:nobody@example.test>", "To: <sip:nobody@example.test>;tag=t1", 1), "404"},
	}
	for _, c := range cases {
		res := roundTrip(t, conn, addr, c.msg)
		if !strings.HasPrefix(res, "SIP/2.0 "+c.want) {
			t.Errorf("%s: want %s, got %q", c.name, c.want, strings.SplitN(res, "\r\n", 2)[0])
		}
	}
	_ = p
}

// A source over the rate limit is dropped, and said so in the log; a mesh
// peer is not limited.
func TestPike(t *testing.T) {
	_, addr, logs := startProxy(t, Config{RateLimit: 5, RateBurst: 5, Mesh: fakeMesh{peers: map[string]bool{"127.0.44.3": true}}})
	count := func(local string) int {
		conn, err := net.ListenPacket("udp", local+":0")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		dst, _ := net.ResolveUDPAddr("udp", addr)
		for i := 0; i < 30; i++ {
			msg := strings.ReplaceAll(request("OPTIONS", "sip:example.test", "sip:x@elsewhere.test"), "LOCAL", conn.LocalAddr().String())
			msg = strings.Replace(msg, "CSeq: 1", "CSeq: "+strconv.Itoa(i+1), 1)
			conn.WriteTo([]byte(strings.Replace(msg, "branch=z9hG4bK", "branch=z9hG4bK"+strconv.Itoa(i), 1)), dst)
		}
		got := 0
		buf := make([]byte, 65535)
		conn.SetReadDeadline(time.Now().Add(time.Second))
		for {
			if _, _, err := conn.ReadFrom(buf); err != nil {
				return got
			}
			got++
		}
	}
	if n := count("127.0.44.4"); n < 5 || n > 10 {
		t.Errorf("flooding source: %d of 30 answered, want 5-10 (burst 5, 5/s)", n)
	}
	if !strings.Contains(logs.String(), "rate limit") || !strings.Contains(logs.String(), "127.0.44.4") {
		t.Errorf("no log line naming the source:\n%s", logs.String())
	}
	if n := count("127.0.44.3"); n != 30 {
		t.Errorf("mesh peer: %d of 30 answered, want all", n)
	}
}
