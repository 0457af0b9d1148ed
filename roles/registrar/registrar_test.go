package registrar

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// memStore is a Store that merges like the replicated store: per record,
// Newer decides, ties go to the later write.
type memStore struct {
	mu   sync.Mutex
	recs map[string]map[string]Record
	ver  uint64
	now  func() time.Time
}

func newMemStore(now func() time.Time) *memStore {
	return &memStore{recs: map[string]map[string]Record{}, now: now}
}

func (m *memStore) Put(_ context.Context, key string, recs ...Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.recs[key] == nil {
		m.recs[key] = map[string]Record{}
	}
	for _, r := range recs {
		if r.Version == 0 {
			m.ver++
			r.Version = m.ver
		}
		if cur, ok := m.recs[key][r.ID]; ok && !Newer(r, cur) {
			continue
		}
		m.recs[key][r.ID] = r
	}
	return nil
}

func (m *memStore) Get(_ context.Context, key string, dst []Record) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := len(dst)
	for _, r := range m.recs[key] {
		if !r.Deleted && m.now().Before(r.Expires) {
			dst = append(dst, r)
		}
	}
	// In ID order, as overlay/store gives them.
	slices.SortFunc(dst[n:], func(a, b Record) int { return strings.Compare(a.ID, b.ID) })
	return dst, nil
}

type okAuth struct{ user string }

func (a okAuth) Verify(context.Context, *sip.Request, bool) (string, error) { return a.user, nil }

func parseReq(t *testing.T, lines ...string) *sip.Request {
	t.Helper()
	raw := strings.Join(lines, "\r\n") + "\r\nContent-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, raw)
	}
	return msg.(*sip.Request)
}

func reg(t *testing.T, callID string, cseq int, extra ...string) *sip.Request {
	lines := []string{
		"REGISTER sip:example.test SIP/2.0",
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK" + fmt.Sprint(cseq),
		"From: <sip:alice@example.test>;tag=a",
		"To: <sip:alice@example.test>",
		"Call-ID: " + callID,
		fmt.Sprintf("CSeq: %d REGISTER", cseq),
	}
	return parseReq(t, append(lines, extra...)...)
}

// contacts returns "uri;expires=N[;q=..]" of a 200 OK, in order, as a UA
// reads them from the wire (the registrar lists them in one header field).
func contacts(res *sip.Response) []string {
	msg, err := sip.ParseMessage([]byte(res.String()))
	if err != nil {
		panic(fmt.Sprintf("the 200 does not parse: %v\n%s", err, res))
	}
	var out []string
	for _, h := range msg.GetHeaders("Contact") {
		out = append(out, h.Value())
	}
	return out
}

func TestRegisterRules(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	st := newMemStore(clock)
	r, err := New("example.test", st, WithClock(clock), WithExpiry(60*time.Second, 3600*time.Second, 1800*time.Second),
		WithAuthenticator(okAuth{"alice"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	steps := []struct {
		name    string
		req     *sip.Request
		advance time.Duration
		code    int
		want    []string // Contact values of the 200, in order
		header  string   // a header the response must carry, "Name: value"
	}{
		{"add two contacts, header expiry and q", reg(t, "c1", 1, "Contact: <sip:a@192.0.2.1>;q=0.5, <sip:b@192.0.2.2>", "Expires: 600"), 0, 200,
			[]string{"<sip:a@192.0.2.1>;expires=600;q=0.5", "<sip:b@192.0.2.2>;expires=600"}, ""},
		{"query lists every binding with time left", reg(t, "c1", 2), 100 * time.Second, 200,
			[]string{"<sip:a@192.0.2.1>;expires=500;q=0.5", "<sip:b@192.0.2.2>;expires=500"}, ""},
		{"refresh one, contact expires parameter wins", reg(t, "c1", 3, "Contact: <sip:b@192.0.2.2>;expires=3000", "Expires: 600"), 0, 200,
			[]string{"<sip:a@192.0.2.1>;expires=500;q=0.5", "<sip:b@192.0.2.2>;expires=3000"}, ""},
		{"above the maximum is clamped", reg(t, "c1", 4, "Contact: <sip:b@192.0.2.2>;expires=99999"), 0, 200,
			[]string{"<sip:a@192.0.2.1>;expires=500;q=0.5", "<sip:b@192.0.2.2>;expires=3600"}, ""},
		{"below the minimum is 423 with Min-Expires", reg(t, "c1", 5, "Contact: <sip:c@192.0.2.3>", "Expires: 30"), 0, 423, nil, "Min-Expires: 60"},
		{"out-of-order CSeq for the Call-ID fails", reg(t, "c1", 2, "Contact: <sip:b@192.0.2.2>", "Expires: 0"), 0, 500, nil, ""},
		{"the same CSeq again is a retransmission: no change", reg(t, "c1", 4, "Contact: <sip:b@192.0.2.2>", "Expires: 0"), 0, 200,
			[]string{"<sip:a@192.0.2.1>;expires=500;q=0.5", "<sip:b@192.0.2.2>;expires=3600"}, ""},
		{"default expiry", reg(t, "c2", 1, "Contact: <sip:c@192.0.2.3>"), 0, 200,
			[]string{"<sip:a@192.0.2.1>;expires=500;q=0.5", "<sip:b@192.0.2.2>;expires=3600", "<sip:c@192.0.2.3>;expires=1800"}, ""},
		{"Expires: 0 removes one", reg(t, "c1", 6, "Contact: <sip:a@192.0.2.1>", "Expires: 0"), 0, 200,
			[]string{"<sip:b@192.0.2.2>;expires=3600", "<sip:c@192.0.2.3>;expires=1800"}, ""},
		{"a binding expires", reg(t, "c2", 2), 1800 * time.Second, 200,
			[]string{"<sip:b@192.0.2.2>;expires=1800"}, ""},
		{"Contact: * needs Expires: 0", reg(t, "c1", 7, "Contact: *", "Expires: 5"), 0, 400, nil, ""},
		{"Contact: * removes all", reg(t, "c3", 1, "Contact: *", "Expires: 0"), 0, 200, nil, ""},
		{"instance id keys the binding", reg(t, "c4", 1, `Contact: <sip:d@192.0.2.4>;+sip.instance="<urn:uuid:1>";reg-id=1`, "Expires: 120"), 0, 200,
			[]string{`<sip:d@192.0.2.4>;expires=120;+sip.instance="<urn:uuid:1>";reg-id=1`}, ""},
		{"same instance, new address replaces it", reg(t, "c4", 2, `Contact: <sip:d@192.0.2.5>;+sip.instance="<urn:uuid:1>";reg-id=1`, "Expires: 120"), 0, 200,
			[]string{`<sip:d@192.0.2.5>;expires=120;+sip.instance="<urn:uuid:1>";reg-id=1`}, ""},
		{"Path is stored and returned when supported", reg(t, "c5", 1, "Path: <sip:ft-x@10.0.0.1;lr>", "Supported: path", "Contact: <sip:e@192.0.2.6>", "Expires: 120"), 0, 200,
			[]string{`<sip:d@192.0.2.5>;expires=120;+sip.instance="<urn:uuid:1>";reg-id=1`, "<sip:e@192.0.2.6>;expires=120"}, "Path: <sip:ft-x@10.0.0.1;lr>"},
	}
	for _, s := range steps {
		now = now.Add(s.advance)
		res, err := r.Register(ctx, s.req, "udp:192.0.2.1:5060")
		if err != nil {
			res = sipstatus.Response(s.req, err)
		}
		if res.StatusCode != s.code {
			t.Fatalf("%s: status %d, want %d (err %v)", s.name, res.StatusCode, s.code, err)
		}
		if s.code == 200 {
			if got := contacts(res); strings.Join(got, "|") != strings.Join(s.want, "|") {
				t.Fatalf("%s: contacts\n got %q\nwant %q", s.name, got, s.want)
			}
		}
		if s.header != "" {
			name, val, _ := strings.Cut(s.header, ": ")
			if h := res.GetHeader(name); h == nil || h.Value() != val {
				t.Fatalf("%s: want %s, response:\n%s", s.name, s.header, res)
			}
		}
	}
	bs, err := r.Lookup(ctx, "alice@example.test")
	if err != nil || len(bs) != 2 || bs[1].Path == nil || bs[1].Path[0] != "<sip:ft-x@10.0.0.1;lr>" {
		t.Fatalf("lookup: %+v %v", bs, err)
	}
}

func TestRegisterRefusals(t *testing.T) {
	st := newMemStore(time.Now)
	r, _ := New("example.test", st, WithAuthenticator(okAuth{"bob"}))
	ctx := context.Background()
	res, err := r.Register(ctx, reg(t, "x", 1, "Contact: <sip:a@192.0.2.1>"), "")
	if sipstatus.Of(err).Code != 403 || !errors.Is(err, ErrForbidden) || res != nil {
		t.Fatalf("bob registering alice: %v", err)
	}
	other := parseReq(t, "REGISTER sip:other.test SIP/2.0", "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx",
		"From: <sip:bob@other.test>;tag=a", "To: <sip:bob@other.test>", "Call-ID: y", "CSeq: 1 REGISTER")
	if _, err := r.Register(ctx, other, ""); sipstatus.Of(err).Code != 403 || !errors.Is(err, ErrNotOurDomain) {
		t.Fatalf("foreign domain: %v", err)
	}
}

// onceAuth accepts each request's credentials once, as nonce counting
// does: a second Verify of the same request is a replay.
type onceAuth struct {
	mu   sync.Mutex
	seen map[*sip.Request]bool
}

func (a *onceAuth) Verify(_ context.Context, req *sip.Request, _ bool) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen[req] {
		return "", sipstatus.Unauthorized(nil, errors.New("nonce count replayed"))
	}
	a.seen[req] = true
	return req.To().Address.User, nil
}

// Reregister answers a retransmission that Register would refuse as a
// replay, with the bindings as they are and without a write.
func TestReregister(t *testing.T) {
	st := newMemStore(time.Now)
	r, _ := New("example.test", st, WithAuthenticator(&onceAuth{seen: map[*sip.Request]bool{}}))
	ctx := context.Background()
	req := reg(t, "x", 1, "Contact: <sip:a@192.0.2.1>", "Expires: 600")
	if _, err := r.Register(ctx, req, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(ctx, req, ""); sipstatus.Of(err).Code != 401 {
		t.Fatalf("Register of the same request again: %v, want 401", err)
	}
	version := st.ver
	res, err := r.Reregister(ctx, req, "")
	if err != nil || len(contacts(res)) != 1 || !strings.HasPrefix(contacts(res)[0], "<sip:a@192.0.2.1>;expires=") {
		t.Fatalf("Reregister: %v, %v", res, err)
	}
	if st.ver != version {
		t.Fatalf("Reregister wrote %d records", st.ver-version)
	}
}

// The merge rule orders versions of one Call-ID by CSeq whatever their
// store version, and leaves other Call-IDs to the store's version; values
// in the stored form and in the JSON of earlier versions compare alike.
func TestNewer(t *testing.T) {
	encodings := map[string]func(callID string, cseq int) []byte{
		"stored": func(callID string, cseq int) []byte { return Binding{CallID: callID, CSeq: uint32(cseq)}.Encode() },
		"json": func(callID string, cseq int) []byte {
			return []byte(fmt.Sprintf(`{"call_id":%q,"cseq":%d}`, callID, cseq))
		},
	}
	for nameA, encA := range encodings {
		for nameB, encB := range encodings {
			a := func(callID string, cseq int, version uint64) Record {
				return Record{ID: "x", Value: encA(callID, cseq), Version: version}
			}
			b := func(callID string, cseq int, version uint64) Record {
				return Record{ID: "x", Value: encB(callID, cseq), Version: version}
			}
			cases := []struct {
				a, b Record
				want bool
			}{
				{a("c", 2, 1), b("c", 1, 9), true},
				{a("c", 1, 9), b("c", 2, 1), false},
				{a("d", 1, 9), b("c", 2, 1), true},
				{a("d", 1, 1), b("c", 2, 9), false},
				{a("c", 1, 5), b("c", 1, 4), true},
				{Record{Value: []byte("garbage"), Version: 5}, b("c", 1, 4), true},
			}
			for i, c := range cases {
				if got := Newer(c.a, c.b); got != c.want {
					t.Errorf("%s vs %s, case %d: Newer = %v, want %v", nameA, nameB, i, got, c.want)
				}
			}
		}
	}
}
