package digest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/internal/retry"
	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// RFC 7616 §3.9.1 and RFC 2617 §3.5 worked examples.
func TestVectors(t *testing.T) {
	tests := []struct {
		name                                  string
		alg                                   Algorithm
		user, realm, pass, method, uri, nonce string
		cnonce, want                          string
	}{
		{"RFC 7616 SHA-256", SHA256, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"},
		{"RFC 7616 MD5", MD5, "Mufasa", "http-auth@example.org", "Circle of Life", "GET", "/dir/index.html",
			"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
			"8ca523f5e9506fed4657c9700eebdbec"},
		{"RFC 2617 MD5", MD5, "Mufasa", "testrealm@host.com", "Circle Of Life", "GET", "/dir/index.html",
			"dcd98b7102dd2f0e8b11d0f600bfb0c093", "0a4f113b",
			"6629fae49393a05397450978507c4ef1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ha1 := HA1(tc.alg, tc.user, tc.realm, tc.pass)
			got := Response(tc.alg, ha1, tc.nonce, "00000001", tc.cnonce, "auth", tc.method, tc.uri)
			if got != tc.want {
				t.Fatalf("response %s, want %s", got, tc.want)
			}
		})
	}
}

const testSecret = "0123456789abcdef-cluster-secret"

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func testUsers() *StaticUsers {
	return NewStaticUsers(map[string]Credentials{
		"alice@example.test": {Password: "s3cret"},
		"bob@example.test":   {HA1: map[Algorithm]string{MD5: HA1(MD5, "bob", "example.test", "hunter2")}},
		"carol@example.test": {HA1: map[Algorithm]string{
			MD5:    HA1(MD5, "carol", "example.test", "pw"),
			SHA256: strings.ToUpper(HA1(SHA256, "carol", "example.test", "pw")),
		}},
	})
}

func newAuth(t *testing.T, c *clock, opts ...Option) *Authenticator {
	t.Helper()
	a, err := New(Config{Secret: []byte(testSecret), NonceLifetime: time.Minute}, testUsers(), append([]Option{WithClock(c.now)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func register(t *testing.T, user string, extra ...string) *sip.Request {
	t.Helper()
	raw := "REGISTER sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.4:5060;branch=z9hG4bKnashds7\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:" + user + "@example.test>\r\n" +
		"From: <sip:" + user + "@example.test>;tag=a73kszlfl\r\n" +
		"Call-ID: 1j9FpLxk3uxtm8tn@192.0.2.4\r\n" +
		"CSeq: 2 REGISTER\r\n" +
		"Contact: <sip:" + user + "@192.0.2.4>\r\n"
	for _, h := range extra {
		raw += h + "\r\n"
	}
	raw += "Content-Length: 0\r\n\r\n"
	m, err := sipmsg.Parse([]byte(raw))
	if err != nil {
		t.Fatalf("test request: %v", err)
	}
	return m.(*sip.Request)
}

// challengeOf returns the status code, the header name and the parsed
// challenges of an error from Verify.
func challengeOf(t *testing.T, err error) (int, []credentials) {
	t.Helper()
	var se *sipstatus.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *sipstatus.Error", err)
	}
	var out []credentials
	for _, h := range se.Headers {
		scheme, c, perr := parseCredentials(h.Value())
		if perr != nil || scheme != "Digest" {
			t.Fatalf("bad challenge %q: %v", h.Value(), perr)
		}
		want := "WWW-Authenticate"
		if se.Code == 407 {
			want = "Proxy-Authenticate"
		}
		if h.Name() != want {
			t.Fatalf("challenge header %s on %d", h.Name(), se.Code)
		}
		out = append(out, c)
	}
	return se.Code, out
}

// authorize answers a challenge as a UA would.
func authorize(req *sip.Request, ch credentials, user, password string, nc int, proxy bool) {
	alg, _ := ParseAlgorithm(ch.get("algorithm"))
	ncs := fmt.Sprintf("%08x", nc)
	cnonce := "0a4f113b"
	uri := req.Recipient.String()
	resp := Response(alg, HA1(alg, user, ch.get("realm"), password), ch.get("nonce"), ncs, cnonce, "auth", string(req.Method), uri)
	name := "Authorization"
	if proxy {
		name = "Proxy-Authorization"
	}
	req.RemoveHeader(name)
	req.AppendHeader(sip.NewHeader(name, fmt.Sprintf(
		`Digest username=%q, realm=%q, nonce=%q, uri=%q, response=%q, algorithm=%s, cnonce=%q, qop=auth, nc=%s`,
		user, ch.get("realm"), ch.get("nonce"), uri, resp, alg, cnonce, ncs)))
}

func TestChallenge(t *testing.T) {
	c := newClock()
	a := newAuth(t, c)
	_, err := a.Verify(context.Background(), register(t, "alice"), false)
	if !errors.Is(err, ErrNoCredentials) {
		t.Fatalf("err %v, want ErrNoCredentials", err)
	}
	code, chs := challengeOf(t, err)
	if code != 401 || len(chs) != 2 {
		t.Fatalf("%d with %d challenges, want 401 with 2", code, len(chs))
	}
	for i, alg := range []string{"SHA-256", "MD5"} {
		ch := chs[i]
		if ch.get("algorithm") != alg || ch.get("realm") != "example.test" || ch.get("qop") != "auth" || ch.has("stale") {
			t.Fatalf("challenge %d = %v", i, ch.params)
		}
	}
	if chs[0].get("nonce") != chs[1].get("nonce") || chs[0].get("nonce") == "" {
		t.Fatal("challenges do not share one nonce")
	}
	// Proxy challenges: 407, realm from the From domain.
	req := register(t, "alice")
	_, err = a.Verify(context.Background(), req, true)
	code, chs = challengeOf(t, err)
	if code != 407 || chs[0].get("realm") != "example.test" {
		t.Fatalf("proxy challenge %d %v", code, chs)
	}
	res := sipstatus.Response(req, err)
	if len(res.GetHeaders("Proxy-Authenticate")) != 2 {
		t.Fatalf("response:\n%s", res)
	}
	// Successive challenges carry different nonces.
	h1 := a.Challenge("example.test", false, false)
	h2 := a.Challenge("example.test", true, false)
	if h1[0].Value() == h2[0].Value() || !strings.HasSuffix(h2[0].Value(), "stale=true") {
		t.Fatalf("%s / %s", h1[0].Value(), h2[0].Value())
	}
}

func TestVerify(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name, user, pass string
		alg              int // index into the challenges: 0 SHA-256, 1 MD5
		proxy            bool
	}{
		{"sha256 password", "alice", "s3cret", 0, false},
		{"md5 password", "alice", "s3cret", 1, false},
		{"md5 ha1", "bob", "hunter2", 1, false},
		{"sha256 ha1 upper-case hex", "carol", "pw", 0, false},
		{"proxy sha256", "alice", "s3cret", 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuth(t, newClock())
			req := register(t, tc.user)
			_, err := a.Verify(ctx, req, tc.proxy)
			_, chs := challengeOf(t, err)
			authorize(req, chs[tc.alg], tc.user, tc.pass, 1, tc.proxy)
			user, err := a.Verify(ctx, req, tc.proxy)
			if err != nil || user != tc.user {
				t.Fatalf("Verify = %q, %v", user, err)
			}
			// Wrong password: 403.
			authorize(req, chs[tc.alg], tc.user, tc.pass+"x", 2, tc.proxy)
			_, err = a.Verify(ctx, req, tc.proxy)
			if code, _ := challengeOf(t, err); code != 403 || !errors.Is(err, ErrWrongPassword) {
				t.Fatalf("wrong password: %d %v", code, err)
			}
		})
	}
}

func TestVerifyFailures(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	a := newAuth(t, c)
	fresh := func(user string) (*sip.Request, []credentials) {
		req := register(t, user)
		_, err := a.Verify(ctx, req, false)
		_, chs := challengeOf(t, err)
		return req, chs
	}

	t.Run("unknown user", func(t *testing.T) {
		req, chs := fresh("mallory")
		authorize(req, chs[0], "mallory", "x", 1, false)
		_, err := a.Verify(ctx, req, false)
		if code, _ := challengeOf(t, err); code != 403 || !errors.Is(err, ErrUnknownUser) {
			t.Fatalf("%d %v", code, err)
		}
	})
	t.Run("replayed nc", func(t *testing.T) {
		req, chs := fresh("alice")
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		if _, err := a.Verify(ctx, req, false); err != nil {
			t.Fatal(err)
		}
		_, err := a.Verify(ctx, req, false) // the same request again
		code, rch := challengeOf(t, err)
		if code != 401 || !errors.Is(err, ErrReplay) || rch[0].get("stale") != "true" {
			t.Fatalf("replay: %d %v %v", code, err, rch)
		}
		authorize(req, chs[0], "alice", "s3cret", 2, false) // next nc on the same nonce
		if _, err := a.Verify(ctx, req, false); err != nil {
			t.Fatalf("nc 2: %v", err)
		}
		authorize(req, chs[0], "alice", "s3cret", 1, false) // going back
		if _, err := a.Verify(ctx, req, false); !errors.Is(err, ErrReplay) {
			t.Fatalf("nc 1 after 2: %v", err)
		}
	})
	t.Run("nonce the counter forgot", func(t *testing.T) {
		full := newAuth(t, c, WithNonceCounter(forgetful{}))
		req := register(t, "alice")
		_, err := full.Verify(ctx, req, false)
		_, chs := challengeOf(t, err)
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		_, err = full.Verify(ctx, req, false)
		code, sch := challengeOf(t, err)
		if code != 401 || !errors.Is(err, ErrStaleNonce) || !errors.Is(err, ErrNonceForgotten) || sch[0].get("stale") != "true" {
			t.Fatalf("forgotten nonce: %d %v %v, want 401 with stale=true", code, err, sch)
		}
	})
	t.Run("stale nonce", func(t *testing.T) {
		req, chs := fresh("alice")
		c.add(61 * time.Second)
		defer c.add(-61 * time.Second)
		authorize(req, chs[1], "alice", "s3cret", 1, false)
		_, err := a.Verify(ctx, req, false)
		code, sch := challengeOf(t, err)
		if code != 401 || !errors.Is(err, ErrStaleNonce) || len(sch) != 2 || sch[0].get("stale") != "true" {
			t.Fatalf("stale: %d %v %v", code, err, sch)
		}
		if sch[0].get("nonce") == chs[0].get("nonce") {
			t.Fatal("stale challenge reuses the old nonce")
		}
		// stale=true only when the password was right.
		authorize(req, chs[1], "alice", "wrong", 1, false)
		if _, err := a.Verify(ctx, req, false); !errors.Is(err, ErrWrongPassword) {
			t.Fatalf("wrong password on a stale nonce: %v", err)
		}
		// The new nonce works.
		authorize(req, sch[1], "alice", "s3cret", 1, false)
		if _, err := a.Verify(ctx, req, false); err != nil {
			t.Fatalf("after stale: %v", err)
		}
	})
	t.Run("nonce from another node", func(t *testing.T) {
		req, chs := fresh("alice")
		b := newAuth(t, c) // same secret, own counter: another node
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		if user, err := b.Verify(ctx, req, false); err != nil || user != "alice" {
			t.Fatalf("other node: %q %v", user, err)
		}
		// A node of another cluster does not accept it.
		other, err := New(Config{Secret: []byte("another-cluster-secret-0123456789")}, testUsers(), WithClock(c.now))
		if err != nil {
			t.Fatal(err)
		}
		_, err = other.Verify(ctx, req, false)
		code, och := challengeOf(t, err)
		if code != 401 || !errors.Is(err, ErrInvalidNonce) || och[0].has("stale") {
			t.Fatalf("foreign nonce: %d %v", code, err)
		}
	})
	t.Run("shared counter catches replay on another node", func(t *testing.T) {
		shared := NewMemoryCounter(WithCounterClock(c.now))
		n1, n2 := newAuth(t, c, WithNonceCounter(shared)), newAuth(t, c, WithNonceCounter(shared))
		req := register(t, "alice")
		_, err := n1.Verify(ctx, req, false)
		_, chs := challengeOf(t, err)
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		if _, err := n1.Verify(ctx, req, false); err != nil {
			t.Fatal(err)
		}
		if _, err := n2.Verify(ctx, req, false); !errors.Is(err, ErrReplay) {
			t.Fatalf("replay on node 2: %v", err)
		}
	})
	t.Run("nonce bound to realm", func(t *testing.T) {
		req, _ := fresh("alice")
		ch := a.Challenge("other.test", false, false)
		_, oc, _ := parseCredentials(ch[0].Value())
		oc.set("realm", "example.test") // replay another realm's nonce here
		authorize(req, oc, "alice", "s3cret", 1, false)
		if _, err := a.Verify(ctx, req, false); !errors.Is(err, ErrInvalidNonce) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("tampered nonce", func(t *testing.T) {
		req, chs := fresh("alice")
		n := []byte(chs[0].get("nonce"))
		n[3] ^= 1
		chs[0].set("nonce", string(n))
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		if _, err := a.Verify(ctx, req, false); !errors.Is(err, ErrInvalidNonce) {
			t.Fatalf("%v", err)
		}
	})
	t.Run("algorithm the user has no HA1 for", func(t *testing.T) {
		req, chs := fresh("bob") // bob has an MD5 HA1 only
		authorize(req, chs[0], "bob", "hunter2", 1, false)
		_, err := a.Verify(ctx, req, false)
		code, bch := challengeOf(t, err)
		if code != 401 || !errors.Is(err, ErrAlgorithmUnavailable) || len(bch) != 1 || bch[0].get("algorithm") != "MD5" {
			t.Fatalf("%d %v %v", code, err, bch)
		}
	})
	t.Run("algorithm not offered", func(t *testing.T) {
		md5only, err := New(Config{Secret: []byte(testSecret), Algorithms: []Algorithm{MD5}}, testUsers(), WithClock(c.now))
		if err != nil {
			t.Fatal(err)
		}
		req, chs := fresh("alice") // SHA-256 challenge from the other authenticator
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		_, err = md5only.Verify(ctx, req, false)
		code, mch := challengeOf(t, err)
		if code != 401 || !errors.Is(err, ErrUnsupportedAlgorithm) || len(mch) != 1 || mch[0].get("algorithm") != "MD5" {
			t.Fatalf("%d %v", code, err)
		}
	})
	t.Run("uri mismatch", func(t *testing.T) {
		req, chs := fresh("alice")
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		req.Recipient.Host = "elsewhere.test"
		_, err := a.Verify(ctx, req, false)
		if code, _ := challengeOf(t, err); code != 400 || !errors.Is(err, ErrURIMismatch) {
			t.Fatalf("%d %v", code, err)
		}
	})
	t.Run("malformed", func(t *testing.T) {
		for _, h := range []string{
			`Digest username="alice", realm="example.test`,
			`Digest username="alice" realm="example.test"`,
			`Digest username="alice", username="bob", realm="example.test"`,
		} {
			req := register(t, "alice", "Authorization: "+h)
			_, err := a.Verify(ctx, req, false)
			if code, _ := challengeOf(t, err); code != 400 || !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: %d %v", h, code, err)
			}
		}
		req, chs := fresh("alice")
		authorize(req, chs[0], "alice", "s3cret", 1, false)
		v := req.GetHeader("Authorization").Value()
		for _, mangle := range []struct{ from, to string }{
			{"qop=auth", "qop=auth-int"}, {"nc=00000001", "nc=1"}, {`cnonce="0a4f113b"`, `cnonce=""`},
		} {
			req.RemoveHeader("Authorization")
			req.AppendHeader(sip.NewHeader("Authorization", strings.Replace(v, mangle.from, mangle.to, 1)))
			_, err := a.Verify(ctx, req, false)
			if code, _ := challengeOf(t, err); code != 400 || !errors.Is(err, ErrMalformed) {
				t.Fatalf("%s: %d %v", mangle.to, code, err)
			}
		}
	})
	t.Run("credentials for another realm", func(t *testing.T) {
		req := register(t, "alice", `Authorization: Digest username="alice", realm="other.test", nonce="x", uri="sip:example.test", response="00"`)
		if _, err := a.Verify(ctx, req, false); !errors.Is(err, ErrNoCredentials) {
			t.Fatalf("%v", err)
		}
	})
}

// RFC 4475 §3.3.7 (regaut01): an unknown authorization scheme is answered
// with a challenge.
func TestRFC4475UnknownScheme(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("..", "sipmsg", "testdata", "rfc4475", "regaut01.sip"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := sipmsg.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	a := newAuth(t, newClock())
	_, err = a.Verify(context.Background(), m.(*sip.Request), false)
	code, chs := challengeOf(t, err)
	if code != 401 || !errors.Is(err, ErrNoCredentials) || chs[0].get("realm") != "example.com" {
		t.Fatalf("%d %v %v", code, err, chs)
	}
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Secret: []byte("short")}, "at least 16 bytes"},
		{Config{Secret: []byte(testSecret), Algorithms: []Algorithm{"SHA-512-256"}}, "not supported"},
		{Config{Secret: []byte(testSecret), Algorithms: []Algorithm{MD5, MD5}}, "twice"},
	} {
		if _, err := New(tc.cfg, testUsers()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%v) = %v, want error containing %q", tc.cfg.Algorithms, err, tc.want)
		}
	}
}

func TestMemoryCounter(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemoryCounter(WithCounterClock(c.now), WithMaxNonces(2))
	exp := c.now().Add(time.Minute)
	for _, step := range []struct {
		nonce string
		nc    uint64
		want  bool
	}{{"a", 1, true}, {"a", 1, false}, {"a", 3, true}, {"a", 2, false}, {"b", 1, true}} {
		ok, err := m.Advance(ctx, step.nonce, step.nc, exp)
		if err != nil || ok != step.want {
			t.Fatalf("Advance(%s, %d) = %v, %v", step.nonce, step.nc, ok, err)
		}
	}
	if _, err := m.Advance(ctx, "c", 1, exp); !errors.Is(err, ErrCounterFull) {
		t.Fatalf("full: %v", err)
	}
	c.add(2 * time.Minute) // a and b expire and are swept
	if ok, err := m.Advance(ctx, "c", 1, c.now().Add(time.Minute)); !ok || err != nil {
		t.Fatalf("after expiry: %v %v", ok, err)
	}
	if m.Len() != 1 {
		t.Fatalf("Len %d after sweep, want 1", m.Len())
	}
}

// A counter full of live nonces forgets the eighth that expire first and
// takes every nonce expiring by then as forgotten; the newer ones keep
// their nonce-counts, so their replays are still refused.
func TestMemoryCounterForgetsOldest(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemoryCounter(WithCounterClock(c.now), WithMaxNonces(80))
	expiry := func(i int) time.Time { return c.now().Add(time.Duration(i+1) * time.Second) }
	for i := range 80 {
		if ok, err := m.Advance(ctx, fmt.Sprint("n", i), 1, expiry(i)); !ok || err != nil {
			t.Fatalf("n%d: %v %v", i, ok, err)
		}
	}
	if ok, err := m.Advance(ctx, "new", 1, expiry(100)); !ok || err != nil {
		t.Fatalf("a new nonce on a full counter: %v %v, want it taken", ok, err)
	}
	if n := m.Len(); n > 72 || n < 65 {
		t.Fatalf("Len %d after making room, want about seven eighths of 80", n)
	}
	for _, tc := range []struct {
		nonce string
		i, nc int
		ok    bool
		err   error
	}{
		{"n0", 0, 2, false, ErrNonceForgotten},     // forgotten
		{"n9", 9, 1, false, ErrNonceForgotten},     // forgotten: a replay is refused too
		{"unseen", 3, 1, false, ErrNonceForgotten}, // expiring as early: stale
		{"n79", 79, 1, false, nil},                 // remembered: a replay
		{"n50", 50, 2, true, nil},                  // remembered: the next count
		{"n20", 20, 2, true, nil},
	} {
		ok, err := m.Advance(ctx, tc.nonce, uint64(tc.nc), expiry(tc.i))
		if ok != tc.ok || !errors.Is(err, tc.err) { // errors.Is(err, nil): err == nil
			t.Errorf("Advance(%s, nc %d) = %v, %v; want %v, %v", tc.nonce, tc.nc, ok, err, tc.ok, tc.err)
		}
	}
}

// A counter fifteen sixteenths full makes room in the background: the
// Advance that finds it so does not wait, and the eighth that expire first
// are forgotten before the counter is full.
func TestMemoryCounterMakesRoomEarly(t *testing.T) {
	ctx := context.Background()
	c := newClock()
	m := NewMemoryCounter(WithCounterClock(c.now), WithMaxNonces(160))
	expiry := func(i int) time.Time { return c.now().Add(time.Duration(i+1) * time.Second) }
	for i := range 151 { // the 151st finds 150: fifteen sixteenths
		if ok, err := m.Advance(ctx, fmt.Sprint("n", i), 1, expiry(i)); !ok || err != nil {
			t.Fatalf("n%d: %v %v", i, ok, err)
		}
	}
	retry.Eventually(t, 5*time.Second, func() error {
		if n := m.Len(); n > 140 {
			return fmt.Errorf("Len %d, want an eighth of the room (20) forgotten", n)
		}
		return nil
	})
	if _, err := m.Advance(ctx, "n0", 2, expiry(0)); !errors.Is(err, ErrNonceForgotten) {
		t.Fatalf("the nonce expiring first: %v, want it forgotten", err)
	}
	if ok, err := m.Advance(ctx, "n150", 2, expiry(150)); !ok || err != nil {
		t.Fatalf("the newest nonce's next count: %v %v", ok, err)
	}
}

// With issuers, a node takes only its own nonces: another node's, with the
// right password, gets stale=true (the client retries silently), so a
// replay sent to another node is refused by a counter in memory.
func TestNonceBoundToIssuer(t *testing.T) {
	c := &clock{t: time.Unix(1_700_000_000, 0)}
	ctx := context.Background()
	node := func(name string) *Authenticator {
		a, err := New(Config{Secret: []byte(testSecret), NonceLifetime: time.Minute, Issuer: name}, testUsers(), WithClock(c.now))
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	n1, n2 := node("n1"), node("n2")
	req := register(t, "alice")
	_, err := n1.Verify(ctx, req, false)
	_, chs := challengeOf(t, err)
	authorize(req, chs[0], "alice", "s3cret", 1, false)
	if _, err := n1.Verify(ctx, req, false); err != nil {
		t.Fatalf("n1 refused its own nonce: %v", err)
	}
	_, err = n2.Verify(ctx, req, false)
	code, rch := challengeOf(t, err)
	if code != 401 || !errors.Is(err, ErrForeignNonce) || rch[0].get("stale") != "true" {
		t.Fatalf("n1's nonce at n2: %d %v %v, want 401 stale=true ErrForeignNonce", code, err, rch)
	}
	// n2's own challenge is then taken.
	req2 := register(t, "alice")
	authorize(req2, rch[0], "alice", "s3cret", 1, false)
	if _, err := n2.Verify(ctx, req2, false); err != nil {
		t.Fatalf("n2 refused its own nonce: %v", err)
	}
	// A wrong password with n1's nonce is still 403 at n2.
	req3 := register(t, "alice")
	authorize(req3, chs[0], "alice", "wrong", 2, false)
	if _, err := n2.Verify(ctx, req3, false); !errors.Is(err, ErrWrongPassword) {
		t.Fatalf("wrong password with a foreign nonce: %v", err)
	}
}

// BenchmarkMemoryCounter is the first use of a fresh nonce, as every
// REGISTER after a 401 makes it, from parallel goroutines, with 500,000
// nonces remembered (two minutes of 4,000 REGISTERs a second).
//
//	go test -run '^$' -bench MemoryCounter -benchmem ./roles/digest/
func BenchmarkMemoryCounter(b *testing.B) {
	ctx := context.Background()
	m := NewMemoryCounter(WithMaxNonces(1 << 26)) // room for b.N more
	exp := time.Now().Add(5 * time.Minute)
	for i := range 500_000 {
		m.Advance(ctx, fmt.Sprintf("preloaded-nonce-%d", i), 1, exp)
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			nonce := "fresh-nonce-" + strconv.FormatInt(next.Add(1), 10)
			if ok, err := m.Advance(ctx, nonce, 1, exp); !ok || err != nil {
				b.Fatalf("Advance(%s) = %v, %v", nonce, ok, err)
			}
		}
	})
}

// BenchmarkMemoryCounterFull is BenchmarkMemoryCounter on a counter that
// is full: 2^20 nonces, expiring over five minutes (a nonce's lifetime),
// as the bench's REGISTER-auth ramp leaves it. It reports the longest
// Advance (max-ms), and how many were refused as the counter was full:
// room is made for an eighth of the nonces about every 130,000 fresh ones,
// and no Advance should wait for all of it.
//
//	go test -run '^$' -bench MemoryCounterFull -benchtime 400000x ./roles/digest/
func BenchmarkMemoryCounterFull(b *testing.B) {
	ctx := context.Background()
	const full = 1 << 20
	m := NewMemoryCounter(WithMaxNonces(full))
	start := time.Now()
	for i := range full {
		m.Advance(ctx, fmt.Sprintf("preloaded-nonce-%d", i), 1, start.Add(time.Duration(i)*5*time.Minute/full))
	}
	exp := start.Add(6 * time.Minute)
	var next, longest, refused atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			nonce := "fresh-nonce-" + strconv.FormatInt(next.Add(1), 10)
			t0 := time.Now()
			ok, err := m.Advance(ctx, nonce, 1, exp)
			d := int64(time.Since(t0))
			for l := longest.Load(); d > l && !longest.CompareAndSwap(l, d); l = longest.Load() {
			}
			switch {
			case errors.Is(err, ErrCounterFull):
				refused.Add(1) // concurrent nonces took the room first
			case !ok || err != nil:
				b.Fatalf("Advance(%s) = %v, %v", nonce, ok, err)
			}
		}
	})
	b.ReportMetric(float64(longest.Load())/1e6, "max-ms")
	b.ReportMetric(float64(refused.Load()), "refused")
}

// A challenge's quoted values come back whole from the credentials parser,
// quotes and backslashes included (RFC 3261 §25.1 quoted-pair).
func TestChallengeQuotingRoundTrip(t *testing.T) {
	for _, realm := range []string{"example.test", `say "hi"`, `back\slash`, `\"`, `"`, ""} {
		v := challengeValue(realm, "n0nce", SHA256, true)
		scheme, c, err := parseCredentials(v)
		if err != nil || scheme != "Digest" {
			t.Fatalf("%q: scheme %q, err %v", v, scheme, err)
		}
		if c.get("realm") != realm || c.get("nonce") != "n0nce" || c.get("algorithm") != "SHA-256" || c.get("qop") != "auth" || c.get("stale") != "true" {
			t.Fatalf("%q read back as %v", v, c.params)
		}
	}
}

// set replaces the value of name, or adds it (tests forging credentials).
func (c *credentials) set(name, value string) {
	for i := range c.params {
		if c.params[i].name == name {
			c.params[i].value = value
			return
		}
	}
	c.params = append(c.params, param{name, value})
}

// forgetful is a NonceCounter that has forgotten every nonce.
type forgetful struct{}

func (forgetful) Advance(context.Context, string, uint64, time.Time) (bool, error) {
	return false, ErrNonceForgotten
}
