package registrar

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

const gruuSecret = "0123456789abcdef-cluster-secret"

var gruuParam = regexp.MustCompile(`(pub|temp)-gruu="([^"]*)"`)

// gruus returns the pub-gruu and temp-gruu of the 200's Contact that
// contains instance.
func gruus(t *testing.T, res *sip.Response, instance string) (pub, temp string) {
	t.Helper()
	for _, c := range contacts(res) {
		if !strings.Contains(c, instance) {
			continue
		}
		for _, m := range gruuParam.FindAllStringSubmatch(c, -1) {
			if m[1] == "pub" {
				pub = m[2]
			} else {
				temp = m[2]
			}
		}
	}
	return pub, temp
}

func uri(t *testing.T, s string) sip.Uri {
	t.Helper()
	var u sip.Uri
	if err := sip.ParseUri(s, &u); err != nil {
		t.Fatalf("%q: %v", s, err)
	}
	return u
}

// lookupGRUU returns the contacts LookupGRUU finds, or the status code of
// its error.
func lookupGRUU(t *testing.T, r *Registrar, gruu string) ([]string, int) {
	t.Helper()
	aor, bs, err := r.LookupGRUU(context.Background(), uri(t, gruu))
	if err != nil {
		if !errors.Is(err, ErrInvalidGRUU) {
			t.Fatalf("LookupGRUU(%s): %v does not wrap ErrInvalidGRUU", gruu, err)
		}
		return nil, sipstatus.Of(err).Code
	}
	if aor != "alice@example.test" {
		t.Fatalf("LookupGRUU(%s): AOR %q", gruu, aor)
	}
	var out []string
	for _, b := range bs {
		out = append(out, b.Contact)
	}
	if len(out) == 0 {
		return nil, 480
	}
	return out, 200
}

// RFC 5627 §5.1 and §5.3 from the registrar's side: GRUUs are issued only
// to UAs that support them and give an instance; the pub-gruu is stable;
// every REGISTER gets a new temp-gruu and all of one Call-ID stay valid;
// a new Call-ID for the instance invalidates them; a GRUU of an instance
// without a binding finds nothing (480); forged, altered, foreign and
// other clusters' GRUUs are 404.
func TestGRUU(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	st := newMemStore(clock)
	r, err := New("example.test", st, WithClock(clock), WithGRUU([]byte(gruuSecret)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	register := func(req *sip.Request) *sip.Response {
		t.Helper()
		res, err := r.Register(ctx, req, "udp:192.0.2.1:5060")
		if err != nil {
			t.Fatalf("REGISTER: %v", err)
		}
		return res
	}
	const inst = `+sip.instance="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>"`

	res := register(reg(t, "c1", 1, "Supported: path", `Contact: <sip:a@192.0.2.1>;`+inst, "Expires: 600"))
	if pub, temp := gruus(t, res, "urn:uuid"); pub != "" || temp != "" {
		t.Fatalf("GRUUs without Supported: gruu: %q %q", pub, temp)
	}
	res = register(reg(t, "c1", 2, "Supported: gruu", `Contact: <sip:a@192.0.2.1>;`+inst, "Contact: <sip:plain@192.0.2.9>", "Expires: 600"))
	pub, temp1 := gruus(t, res, "urn:uuid")
	if pub != "sip:alice@example.test;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6" {
		t.Fatalf("pub-gruu %q\n%s", pub, res)
	}
	if !regexp.MustCompile(`^sip:tgruu\.[A-Za-z0-9_-]+@example\.test;gr$`).MatchString(temp1) || strings.Contains(temp1, "alice") {
		t.Fatalf("temp-gruu %q must be opaque: sip:tgruu.TOKEN@example.test;gr", temp1)
	}
	if p, tg := gruus(t, res, "plain@"); p != "" || tg != "" {
		t.Fatalf("GRUUs for a contact without instance: %q %q", p, tg)
	}
	res = register(reg(t, "c1", 3, "Supported: gruu", `Contact: <sip:a@192.0.2.1>;`+inst, "Expires: 600"))
	pub2, temp2 := gruus(t, res, "urn:uuid")
	if pub2 != pub || temp2 == temp1 || temp2 == "" {
		t.Fatalf("refresh: pub-gruu %q (was %q), temp-gruu %q (was %q): want the same pub-gruu and a new temp-gruu", pub2, pub, temp2, temp1)
	}
	for _, g := range []string{pub, temp1, temp2} {
		if got, code := lookupGRUU(t, r, g); code != 200 || len(got) != 1 || got[0] != "sip:a@192.0.2.1" {
			t.Fatalf("%s: %v %d, want only the instance's contact", g, got, code)
		}
	}

	// The UA restarts: same instance, new Call-ID.
	res = register(reg(t, "c2", 1, "Supported: gruu", `Contact: <sip:a@192.0.2.7>;`+inst, "Expires: 600"))
	_, temp3 := gruus(t, res, "urn:uuid")
	tampered := alter(temp3, len("sip:tgruu.")+5)
	other, _ := New("example.test", newMemStore(clock), WithClock(clock), WithGRUU([]byte("another cluster's secret, 32 b.")))
	foreign := other.temp.mint("alice", "<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>", "c2")
	for _, c := range []struct {
		gruu string
		code int
	}{
		{temp1, 404}, {temp2, 404}, // registration replaced by a new Call-ID
		{temp3, 200}, {pub, 200},
		{tampered, 404},
		{foreign, 404}, // sealed by another cluster
		{"sip:tgruu.AAAA@example.test;gr", 404},
		{"sip:alice@example.test;gr=urn:uuid:00000000-0000-0000-0000-000000000000", 480},
		{"sip:alice@elsewhere.test;gr=urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", 404},
		{"sip:alice@example.test", 404}, // no gr: not a GRUU
	} {
		got, code := lookupGRUU(t, r, c.gruu)
		if code != c.code {
			t.Errorf("%s: %d %v, want %d", c.gruu, code, got, c.code)
		}
		if code == 200 && (len(got) != 1 || got[0] != "sip:a@192.0.2.7") {
			t.Errorf("%s: %v, want the new contact", c.gruu, got)
		}
	}

	// Unregistered: the temp-gruu of the last registration finds nothing.
	register(reg(t, "c2", 2, `Contact: <sip:a@192.0.2.7>;`+inst, "Expires: 0"))
	if _, code := lookupGRUU(t, r, temp3); code != 480 {
		t.Errorf("temp-gruu after unregistering: %d, want 480", code)
	}
}

// alter changes the byte at i of a token to another base64url character.
func alter(s string, i int) string {
	b := []byte(s)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

func TestRegisterOutboundAndLoops(t *testing.T) {
	st := newMemStore(time.Now)
	r, _ := New("example.test", st, WithGRUU([]byte(gruuSecret)))
	ctx := context.Background()
	ob := `Contact: <sip:a@192.0.2.1;ob>;+sip.instance="<urn:uuid:1>";reg-id=1`
	cases := []struct {
		name    string
		req     *sip.Request
		code    int
		require bool // Require: outbound in the 200
	}{
		{"outbound through an edge that marks its Path", reg(t, "o1", 1, "Supported: outbound, path", "Path: <sip:ft-x@10.0.0.1;lr;ob>", ob), 200, true},
		{"outbound, the registrar is the first hop", reg(t, "o2", 1, "Supported: outbound", ob), 200, true},
		{"outbound through a first hop without ob", reg(t, "o3", 1, "Supported: outbound", "Path: <sip:ft-x@10.0.0.1;lr;ob>", "Path: <sip:p@10.0.0.2;lr>", ob), 439, false},
		{"reg-id without Supported: outbound", reg(t, "o4", 1, "Path: <sip:p@10.0.0.2;lr>", ob), 200, false},
		{"Supported: outbound without reg-id", reg(t, "o5", 1, "Supported: outbound", `Contact: <sip:a@192.0.2.1>;+sip.instance="<urn:uuid:2>"`), 200, false},
		{"a GRUU as contact", reg(t, "o6", 1, "Contact: <sip:bob@example.test;gr=urn:uuid:9>"), 403, false},
		{"the AOR as contact", reg(t, "o7", 1, "Contact: <sip:alice@example.test>"), 403, false},
	}
	for _, c := range cases {
		res, err := r.Register(ctx, c.req, "")
		if err != nil {
			res = sipstatus.Response(c.req, err)
		}
		if res.StatusCode != c.code {
			t.Errorf("%s: %d, want %d (%v)", c.name, res.StatusCode, c.code, err)
			continue
		}
		h := res.GetHeader("Require")
		if got := h != nil && h.Value() == "outbound"; got != c.require {
			t.Errorf("%s: Require: outbound %v, want %v\n%s", c.name, got, c.require, res)
		}
	}
}
