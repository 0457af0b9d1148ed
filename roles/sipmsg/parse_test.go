package sipmsg

import (
	"errors"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// msgWith builds a REGISTER, replacing or adding header lines: a key maps to
// a full line ("" deletes the header).
func msgWith(startLine string, repl map[string]string, body string) []byte {
	order := []string{"Via", "Max-Forwards", "To", "From", "Call-ID", "CSeq", "Contact", "Content-Length"}
	lines := map[string]string{
		"Via":            "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bKnashds7",
		"Max-Forwards":   "Max-Forwards: 70",
		"To":             "To: Bob <sip:bob@example.test>",
		"From":           "From: Bob <sip:bob@example.test>;tag=456248",
		"Call-ID":        "Call-ID: 843817637684230@998sdasdh09",
		"CSeq":           "CSeq: 1826 REGISTER",
		"Contact":        "Contact: <sip:bob@192.0.2.10>;expires=7200",
		"Content-Length": "Content-Length: " + itoa(len(body)),
	}
	var extra []string
	for k, v := range repl {
		if _, ok := lines[k]; ok {
			lines[k] = v
		} else {
			extra = append(extra, v)
		}
	}
	var b strings.Builder
	b.WriteString(startLine + "\r\n")
	for _, k := range order {
		if lines[k] != "" {
			b.WriteString(lines[k] + "\r\n")
		}
	}
	for _, l := range extra {
		b.WriteString(l + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return []byte(b.String())
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

const regLine = "REGISTER sip:registrar.example.test SIP/2.0"

func TestParseChecks(t *testing.T) {
	tests := []struct {
		name   string
		data   []byte
		v      *Validator
		status int // -1: accepted
		field  string
	}{
		{"valid", msgWith(regLine, nil, ""), nil, -1, ""},
		{"max-forwards 255", msgWith(regLine, map[string]string{"Max-Forwards": "Max-Forwards: 255"}, ""), nil, -1, ""},
		{"max-forwards 256", msgWith(regLine, map[string]string{"Max-Forwards": "Max-Forwards: 256"}, ""), nil, 400, "Max-Forwards"},
		{"max-forwards text", msgWith(regLine, map[string]string{"Max-Forwards": "Max-Forwards: seventy"}, ""), nil, 400, "Max-Forwards"},
		{"two max-forwards", msgWith(regLine, map[string]string{"X": "Max-Forwards: 69"}, ""), nil, 400, "Max-Forwards"},
		{"cseq 2^31-1", msgWith(regLine, map[string]string{"CSeq": "CSeq: 2147483647 REGISTER"}, ""), nil, -1, ""},
		{"cseq 2^31", msgWith(regLine, map[string]string{"CSeq": "CSeq: 2147483648 REGISTER"}, ""), nil, 400, "CSeq"},
		{"cseq no method", msgWith(regLine, map[string]string{"CSeq": "CSeq: 12"}, ""), nil, 400, "CSeq"},
		{"cseq method case", msgWith(regLine, map[string]string{"CSeq": "CSeq: 12 register"}, ""), nil, 400, "CSeq"},
		{"missing call-id", msgWith(regLine, map[string]string{"Call-ID": ""}, ""), nil, 400, "Call-ID"},
		{"missing from", msgWith(regLine, map[string]string{"From": ""}, ""), nil, 400, "From"},
		{"missing cseq", msgWith(regLine, map[string]string{"CSeq": ""}, ""), nil, 400, "CSeq"},
		{"missing via: drop", msgWith(regLine, map[string]string{"Via": ""}, ""), nil, 0, "Via"},
		{"missing max-forwards ok", msgWith(regLine, map[string]string{"Max-Forwards": ""}, ""), nil, -1, ""},
		{"missing max-forwards required", msgWith(regLine, map[string]string{"Max-Forwards": ""}, ""), New(WithMaxForwardsRequired()), 400, "Max-Forwards"},
		{"sip/2.0 lower case", msgWith("REGISTER sip:registrar.example.test sip/2.0", nil, ""), nil, -1, ""},
		{"sip/3.0", msgWith("REGISTER sip:registrar.example.test SIP/3.0", nil, ""), nil, 505, "Request-Line"},
		{"tab in request line", msgWith("REGISTER\tsip:registrar.example.test SIP/2.0", nil, ""), nil, 400, "Request-Line"},
		{"unparsable start line: drop", msgWith("HELLO", nil, ""), nil, 0, ""},
		{"tel request-uri", msgWith("REGISTER tel:+15551234 SIP/2.0", nil, ""), nil, 416, "Request-URI"},
		{"tel request-uri allowed", msgWith("REGISTER tel:+15551234 SIP/2.0", nil, ""), New(WithSchemes("sip", "sips", "tel")), -1, ""},
		{"bad host in request-uri", msgWith("REGISTER sip:reg_istrar.example.test SIP/2.0", nil, ""), nil, 400, "Request-URI"},
		{"bad escape in request-uri", msgWith("REGISTER sip:a%4@registrar.example.test SIP/2.0", nil, ""), nil, 400, "Request-URI"},
		{"duplicate uri param", msgWith("REGISTER sip:registrar.example.test;lr;LR SIP/2.0", nil, ""), nil, 400, "Request-URI"},
		{"port out of range", msgWith("REGISTER sip:registrar.example.test:65536 SIP/2.0", nil, ""), nil, 400, "Request-URI"},
		{"ipv6 request-uri", msgWith("REGISTER sip:[2001:db8::1]:5060 SIP/2.0", nil, ""), nil, -1, ""},
		{"content-length short body", msgWith(regLine, map[string]string{"Content-Length": "Content-Length: 10"}, "abc"), nil, 400, "Content-Length"},
		{"content-length shorter than datagram", msgWith(regLine, map[string]string{"Content-Length": "Content-Length: 2"}, "abc"), nil, -1, ""},
		{"bare LF", []byte(strings.Replace(string(msgWith(regLine, nil, "")), "Max-Forwards: 70\r\n", "Max-Forwards: 70\nX: y\r\n", 1)), nil, 400, "message"},
		{"no blank line", []byte(strings.TrimSuffix(string(msgWith(regLine, nil, "")), "\r\n")), nil, 400, "message"},
		{"header without colon", msgWith(regLine, map[string]string{"X": "Foobar roobar"}, ""), nil, 400, "message"},
		{"control char in header", msgWith(regLine, map[string]string{"X": "Subject: a\x01b"}, ""), nil, 400, "Subject"},
		{"invalid utf-8", msgWith(regLine, map[string]string{"X": "Subject: \xff\xfe"}, ""), nil, 400, "message"},
		{"duplicate tag", msgWith(regLine, map[string]string{"From": "From: <sip:bob@example.test>;tag=1;tag=2"}, ""), nil, 400, "From"},
		{"received not an ip", msgWith(regLine, map[string]string{"Via": "Via: SIP/2.0/UDP h.example.test;received=h2.example.test;branch=z9hG4bK1"}, ""), nil, 400, "Via"},
		{"received ipv6", msgWith(regLine, map[string]string{"Via": "Via: SIP/2.0/UDP [2001:db8::2]:5060;received=2001:db8::9;rport=5070;branch=z9hG4bK1"}, ""), nil, -1, ""},
		{"via ttl", msgWith(regLine, map[string]string{"Via": "Via: SIP/2.0/UDP h.example.test;ttl=256;branch=z9hG4bK1"}, ""), nil, 400, "Via"},
		{"via wrong protocol", msgWith(regLine, map[string]string{"Via": "Via: SIP/3.0/UDP h.example.test;branch=z9hG4bK1"}, ""), nil, 400, "Via"},
		{"via no sent-by", msgWith(regLine, map[string]string{"Via": "Via: SIP/2.0/UDP"}, ""), nil, 0, "Via"},
		{"contact wildcard", msgWith(regLine, map[string]string{"Contact": "Contact: *", "X": "Expires: 0"}, ""), nil, -1, ""},
		{"contact wildcard mixed", msgWith(regLine, map[string]string{"Contact": "Contact: *, <sip:a@b.example.test>"}, ""), nil, 400, "Contact"},
		{"contact list", msgWith(regLine, map[string]string{"Contact": `Contact: "A" <sip:a@h1.example.test>;q=0.5, sip:b@h2.example.test;expires=60`}, ""), nil, -1, ""},
		{"route without brackets", msgWith(regLine, map[string]string{"X": "Route: sip:p.example.test;lr"}, ""), nil, 400, "Route"},
		{"date ok", msgWith(regLine, map[string]string{"X": "Date: Sat, 13 Nov 2010 23:29:00 GMT"}, ""), nil, -1, ""},
		{"expires text", msgWith(regLine, map[string]string{"X": "Expires: soon"}, ""), nil, 400, "Expires"},
		{"require empty", msgWith(regLine, map[string]string{"X": "Require:"}, ""), nil, 400, "Require"},
		{"supported empty", msgWith(regLine, map[string]string{"X": "k:"}, ""), nil, -1, ""},
		{"content-type bad", msgWith(regLine, map[string]string{"X": "Content-Type: sdp"}, ""), nil, 400, "Content-Type"},
		{"too large", msgWith(regLine, map[string]string{"Content-Length": "Content-Length: 600"}, strings.Repeat("x", 600)), New(WithMaxMessageSize(700)), 513, "message"},
		{"ack invalid: drop", msgWith("ACK sip:registrar.example.test SIP/2.0", map[string]string{"CSeq": "CSeq: 1 ACK", "Max-Forwards": "Max-Forwards: 300"}, ""), nil, 0, "Max-Forwards"},
		{"response invalid: drop", msgWith("SIP/2.0 200 OK", map[string]string{"Call-ID": ""}, ""), nil, 0, "Call-ID"},
		{"response without reason", msgWith("SIP/2.0 200", nil, ""), nil, -1, ""},
		{"response code 099: drop", msgWith("SIP/2.0 099 Early", nil, ""), nil, 0, "Status-Line"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v := tc.v
			if v == nil {
				v = New()
			}
			m, err := v.Parse(tc.data)
			if tc.status == -1 {
				if err != nil {
					t.Fatalf("rejected: %v\n%s", err, tc.data)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted:\n%s", m)
			}
			code, d := statusOf(t, err)
			eq(t, "status", code, tc.status)
			if tc.field != "" {
				if d == nil {
					t.Fatalf("no Defect: %v", err)
				}
				eq(t, "field", d.Field, tc.field)
			}
			if code != 0 {
				if res := sipstatus.Response(mustReq(t, m), err); res == nil || res.StatusCode != code {
					t.Fatalf("response %v, want %d", res, code)
				}
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	data := msgWith(regLine, map[string]string{
		"Contact": `m: "A \"x\"" <sip:a@h1.example.test;transport=tcp>;q=0.5;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>", sip:b@h2.example.test;expires=60;x="a b"`,
		"Via":     "v: SIP/2.0/TCP [2001:db8::2]:5061;branch=z9hG4bK1;rport, SIP/2.0/UDP proxy.example.test;received=192.0.2.1;branch=z9hG4bK2",
		"X":       "k: path, outbound",
	}, "")
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	cs := contacts(m)
	eq(t, "contacts", len(cs), 2)
	eq(t, "display", DisplayName(cs[0].DisplayName), `A "x"`)
	eq(t, "transport", pv(t, cs[0].Address.UriParams, "transport"), "tcp")
	eq(t, "instance", ParamValue(pv(t, cs[0].Params, "+sip.instance")), "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
	eq(t, "q", pv(t, cs[0].Params, "q"), "0.5")
	eq(t, "second host", cs[1].Address.Host, "h2.example.test")
	eq(t, "second expires", pv(t, cs[1].Params, "expires"), "60")
	eq(t, "quoted with space", ParamValue(pv(t, cs[1].Params, "x")), "a b")
	vs := vias(m)
	eq(t, "vias", len(vs), 2)
	eq(t, "ipv6 via host", vs[0].Host, "2001:db8::2")
	eq(t, "ipv6 via port", vs[0].Port, 5061)
	eq(t, "rport", vs[0].Params.Has("rport"), true)
	eq(t, "received", pv(t, vs[1].Params, "received"), "192.0.2.1")
	eq(t, "Supported", header(t, m, "Supported"), "path, outbound")
	// Re-serialized, it reads the same.
	m2, err := Parse([]byte(m.String()))
	if err != nil {
		t.Fatalf("re-parse: %v\n%s", err, m)
	}
	eq(t, "round trip", m2.String(), m.String())
}

func TestParseStream(t *testing.T) {
	a := msgWith(regLine, nil, "")
	b := msgWith("OPTIONS sip:registrar.example.test SIP/2.0", map[string]string{"CSeq": "CSeq: 7 OPTIONS"}, "hello")
	buf := append(append([]byte("\r\n\r\n"), a...), b...)
	v := New()

	// Every proper prefix is incomplete (or only keep-alives).
	for i := 0; i < len(a)+4; i++ {
		m, n, err := v.ParseStream(buf[:i])
		if !errors.Is(err, ErrIncomplete) || m != nil {
			t.Fatalf("prefix %d: m=%v n=%d err=%v", i, m, n, err)
		}
	}
	m, n, err := v.ParseStream(buf)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "consumed", n, 4+len(a))
	eq(t, "first method", string(mustReq(t, m).Method), "REGISTER")
	m, n2, err := v.ParseStream(buf[n:])
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "consumed second", n2, len(b))
	eq(t, "second body", string(m.Body()), "hello")

	// Missing Content-Length loses framing: 400 and ErrFraming.
	noCL := msgWith(regLine, map[string]string{"Content-Length": ""}, "")
	m, _, err = v.ParseStream(noCL)
	if !errors.Is(err, ErrFraming) {
		t.Fatalf("missing Content-Length: %v", err)
	}
	code, d := statusOf(t, err)
	eq(t, "status", code, 400)
	eq(t, "field", d.Field, "Content-Length")
	if res := sipstatus.Response(mustReq(t, m), err); res == nil || res.StatusCode != 400 {
		t.Fatalf("no 400 for missing Content-Length: %v", res)
	}

	// A framed but invalid message is consumed so reading can go on.
	bad := msgWith(regLine, map[string]string{"CSeq": "CSeq: 1 INVITE"}, "")
	_, n, err = v.ParseStream(append(bad, a...))
	if errors.Is(err, ErrFraming) || n != len(bad) {
		t.Fatalf("framed invalid message: n=%d err=%v", n, err)
	}
	code, _ = statusOf(t, err)
	eq(t, "status", code, 400)

	// An oversized header section without an end is dropped with ErrFraming.
	_, _, err = New(WithMaxMessageSize(100)).ParseStream([]byte("REGISTER sip:a SIP/2.0\r\nX: " + strings.Repeat("y", 200)))
	if !errors.Is(err, ErrFraming) {
		t.Fatalf("oversized: %v", err)
	}
}

// TestValidateSipgoParsed runs the checks on messages read by sipgo's parser,
// as a role receives them from a sipgo server.
func TestValidateSipgoParsed(t *testing.T) {
	v := New(WithProxyRequire())
	for name, want := range map[string]int{
		"mismatch01": 400, "badvers": 505, "escruri": 400, "multi01": 400, "mcl01": 400,
		"insuf": 400, "unkscm": 416, "badbranch": 400, "bext01": 420, "bcast": 0,
	} {
		m, err := sip.ParseMessage(readTorture(t, name))
		if err != nil {
			t.Fatalf("%s: sipgo: %v", name, err)
		}
		code, _ := statusOf(t, v.Validate(m))
		if code != want {
			t.Errorf("%s: Validate status %d, want %d", name, code, want)
		}
	}
	m, err := sip.ParseMessage(readTorture(t, "esc01"))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Validate(m); err != nil {
		t.Fatalf("esc01: %v", err)
	}
}
