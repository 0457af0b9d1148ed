package sipmsg

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// TestRFC4475Valid reads every message of RFC 4475 §3.1.1 (and the §3.3/§3.4
// messages that are syntactically valid) and checks the values read, not
// only that parsing succeeded.
func TestRFC4475Valid(t *testing.T) {
	tests := []struct {
		name    string
		section string
		check   func(t *testing.T, m sip.Message)
	}{
		{"wsinv", "3.1.1.1 A Short Tortuous INVITE", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "method", string(r.Method), "INVITE")
			eq(t, "Request-URI", r.Recipient.String(), "sip:vivekg@chair-dnrc.example.com;unknownparam")
			eq(t, "Request-URI host", r.Recipient.Host, "chair-dnrc.example.com")
			eq(t, "To URI", r.To().Address.String(), "sip:vivekg@chair-dnrc.example.com")
			eq(t, "To host", r.To().Address.Host, "chair-dnrc.example.com")
			eq(t, "To tag", pv(t, r.To().Params, "tag"), "1918181833n")
			eq(t, "From display", DisplayName(r.From().DisplayName), `J Rosenberg \"`)
			eq(t, "From URI", r.From().Address.String(), "sip:jdrosen@example.com")
			eq(t, "From tag", pv(t, r.From().Params, "tag"), "98asjd8")
			eq(t, "Max-Forwards", int(*r.MaxForwards()), 68)
			eq(t, "Call-ID", r.CallID().Value(), "wsinv.ndaksdj@192.0.2.1")
			eq(t, "CSeq", r.CSeq().Value(), "9 INVITE")
			eq(t, "Content-Length", int(*r.ContentLength()), 150)
			eq(t, "body length", len(r.Body()), 150)
			vs := vias(m)
			eq(t, "Via count", len(vs), 3)
			if len(vs) == 3 {
				for i, want := range []struct{ tr, host, branch string }{
					{"UDP", "192.0.2.2", "390skdjuw"},
					{"TCP", "spindle.example.com", "z9hG4bK9ikj8"},
					{"UDP", "192.168.255.111", "z9hG4bK30239"},
				} {
					eq(t, "Via transport", vs[i].Transport, want.tr)
					eq(t, "Via host", vs[i].Host, want.host)
					eq(t, "Via branch", pv(t, vs[i].Params, "branch"), want.branch)
					eq(t, "Via protocol", vs[i].ProtocolName+"/"+vs[i].ProtocolVersion, "SIP/2.0")
				}
			}
			eq(t, "Subject (compact s, empty)", header(t, m, "Subject"), "")
			eq(t, "folded NewFangledHeader", header(t, m, "NewFangledHeader"), "newfangled value continued newfangled value")
			eq(t, "UnknownHeaderWithUnusualValue", header(t, m, "UnknownHeaderWithUnusualValue"), ";;,,;;,;")
			eq(t, "Route", r.Route().Address.String(), "sip:services.example.com;lr;unknownwith=value;unknown-no-value")
			cs := contacts(m)
			eq(t, "Contact count", len(cs), 1)
			if len(cs) == 1 {
				eq(t, "Contact display", DisplayName(cs[0].DisplayName), `Quoted string ""`)
				eq(t, "Contact URI", cs[0].Address.String(), "sip:jdrosen@example.com")
				eq(t, "Contact newparam", pv(t, cs[0].Params, "newparam"), "newvalue")
				eq(t, "Contact secondparam", cs[0].Params.Has("secondparam"), true)
				eq(t, "Contact q", pv(t, cs[0].Params, "q"), "0.33")
			}
		}},
		{"intmeth", "3.1.1.2 Wide Range of Valid Characters", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			const method = "!interesting-Method0123456789_*+`.%indeed'~"
			eq(t, "method (case kept)", string(r.Method), method)
			eq(t, "Request-URI user", r.Recipient.User, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
			eq(t, "Request-URI password", r.Recipient.Password, "&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
			eq(t, "Request-URI host", r.Recipient.Host, "example.com")
			eq(t, "Via branch", pv(t, r.Via().Params, "branch"), "z9hG4bK-.!%66*_+`'~")
			eq(t, "Via transport", r.Via().Transport, "TCP")
			eq(t, "To display (quoted-pairs)", DisplayName(r.To().DisplayName), "BEL:\x07 NUL:\x00 DEL:\x7f")
			eq(t, "To user", r.To().Address.User, "1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
			eq(t, "To tag", r.To().Params.Has("tag"), false)
			eq(t, "From display", r.From().DisplayName, "token1~` token2'+_ token3*%!.-")
			eq(t, "From URI", r.From().Address.String(), "sip:mundane@example.com")
			eq(t, "From param", ParamValue(pv(t, r.From().Params, "fromparam''~+*_!.-%")), "работающий")
			eq(t, "From tag", pv(t, r.From().Params, "tag"), "_token~1'+`*%!-.")
			eq(t, "Call-ID", r.CallID().Value(), "intmeth.word%ZK-!.*_+'@word`~)(><:\\/\"][?}{")
			eq(t, "CSeq number", r.CSeq().SeqNo, uint32(139122385))
			eq(t, "CSeq method", string(r.CSeq().MethodName), method)
			eq(t, "Max-Forwards", int(*r.MaxForwards()), 255)
			eq(t, "extension header", header(t, m, "extensionHeader-!.%*+_`'~"), "\ufeff大停電")
			eq(t, "Content-Length", int(*r.ContentLength()), 0)
		}},
		{"esc01", "3.1.1.3 Valid Use of the % Escaping Mechanism", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "method", string(r.Method), "INVITE")
			eq(t, "Request-URI user (escaped)", r.Recipient.User, "sips%3Auser%40example.com")
			eq(t, "Request-URI user", Unescape(r.Recipient.User), "sips:user@example.com")
			eq(t, "Request-URI host", r.Recipient.Host, "example.net")
			eq(t, "To user", Unescape(r.To().Address.User), "user")
			eq(t, "From user", Unescape(r.From().Address.User), "I have spaces")
			eq(t, "From tag", pv(t, r.From().Params, "tag"), "938")
			eq(t, "Max-Forwards", int(*r.MaxForwards()), 87)
			eq(t, "Call-ID (compact i)", r.CallID().Value(), "esc01.239409asdfakjkn23onasd0-3234")
			eq(t, "CSeq", r.CSeq().Value(), "234234 INVITE")
			eq(t, "Content-Type (compact C)", r.ContentType().Value(), "application/sdp")
			cs := contacts(m)
			eq(t, "Contact count (folded)", len(cs), 1)
			if len(cs) == 1 {
				u := cs[0].Address
				eq(t, "Contact user", Unescape(u.User), "caller")
				eq(t, "Contact host", u.Host, "host5.example.net")
				eq(t, "Contact params", len(u.UriParams), 2)
				if len(u.UriParams) == 2 {
					eq(t, "Contact param 1", Unescape(u.UriParams[0].K), "lr")
					eq(t, "Contact param 2 name", Unescape(u.UriParams[1].K), "name")
					eq(t, "Contact param 2 value", Unescape(u.UriParams[1].V), "value%41")
				}
			}
			eq(t, "body length", len(r.Body()), 150)
		}},
		{"escnull", "3.1.1.4 Escaped Nulls in URIs", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "method", string(r.Method), "REGISTER")
			eq(t, "To user", Unescape(r.To().Address.User), "null-\x00-null")
			eq(t, "From user", Unescape(r.From().Address.User), "null-\x00-null")
			eq(t, "From tag", pv(t, r.From().Params, "tag"), "839923423")
			cs := contacts(m)
			eq(t, "Contact count", len(cs), 2)
			if len(cs) == 2 {
				eq(t, "Contact 1 user", Unescape(cs[0].Address.User), "\x00")
				eq(t, "Contact 2 user", Unescape(cs[1].Address.User), "\x00\x00")
			}
			eq(t, "CSeq", r.CSeq().Value(), "14398234 REGISTER")
			eq(t, "Content-Length (L:0)", int(*r.ContentLength()), 0)
		}},
		{"esc02", "3.1.1.5 Use of % When It Is Not an Escape", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "method (not REGISTER)", string(r.Method), "RE%47IST%45R")
			eq(t, "CSeq method", string(r.CSeq().MethodName), "RE%47IST%45R")
			eq(t, "To display", r.To().DisplayName, "%Z%45")
			eq(t, "From display", r.From().DisplayName, "%Z%45")
			eq(t, "Via branch", pv(t, r.Via().Params, "branch"), "z9hG4bK209%fzsnel234")
			cs := contacts(m)
			eq(t, "Contact count (C%6Fntact is another header)", len(cs), 2)
			if len(cs) == 2 {
				eq(t, "Contact 1", cs[0].Address.User, "alias1")
				eq(t, "Contact 2", cs[1].Address.User, "alias3")
			}
			eq(t, "C%6Fntact", header(t, m, "C%6Fntact"), "<sip:alias2@host2.example.com>")
		}},
		{"lwsdisp", "3.1.1.6 No LWS between Display Name and <", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "method", string(r.Method), "OPTIONS")
			eq(t, "From display", r.From().DisplayName, "caller")
			eq(t, "From URI", r.From().Address.String(), "sip:caller@example.com")
			eq(t, "From tag", pv(t, r.From().Params, "tag"), "323")
			eq(t, "CSeq", r.CSeq().Value(), "60 OPTIONS")
		}},
		{"longreq", "3.1.1.7 Long Values in Header Fields", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			long := func(s string, n int) string { return strings.Repeat(s, n) }
			eq(t, "To display", r.To().DisplayName, "I have a user name of "+long("extreme", 10)+" proportion")
			eq(t, "To port", r.To().Address.Port, 6000)
			eq(t, "To param 1", pv(t, r.To().Address.UriParams, "unknownparam1"), "very"+long("long", 20)+"value")
			eq(t, "To param 2", pv(t, r.To().Address.UriParams, "longparam"+long("name", 25)), "shortvalue")
			eq(t, "To param 3 (no value)", r.To().Address.UriParams.Has("very"+long("long", 25)+"parameternamewithnovalue"), true)
			eq(t, "From user", r.From().Address.User, long("amazinglylongcallername", 5))
			eq(t, "From tag", pv(t, r.From().Params, "tag"), "1"+long("298", 50)+"2424")
			eq(t, "From param", pv(t, r.From().Params, "unknownheaderparam"+long("name", 20)), "unknowheaderparam"+long("value", 15))
			eq(t, "From valueless param", r.From().Params.Has("unknownvaluelessparam"+long("nameparam", 9)+"name"), true)
			eq(t, "Call-ID", r.CallID().Value(), "longreq.one"+long("really", 20)+"longcallid")
			eq(t, "CSeq", r.CSeq().Value(), "3882340 INVITE")
			vs := vias(m)
			eq(t, "Via count", len(vs), 34)
			if len(vs) == 34 {
				eq(t, "Via 1", vs[0].Host, "sip33.example.com")
				eq(t, "Via 13 (V :  )", vs[11].Host, "sip22.example.com")
				eq(t, "Via 33", vs[32].Host, "sip1.example.com")
				eq(t, "last Via received", pv(t, vs[33].Params, "received"), "192.0.2.5")
				eq(t, "last Via branch", pv(t, vs[33].Params, "branch"), "very"+long("long", 50)+"branchvalue")
			}
			eq(t, "Max-Forwards", int(*r.MaxForwards()), 70)
			eq(t, "Content-Length (l:)", int(*r.ContentLength()), 150)
			eq(t, "body", len(r.Body()), 150)
		}},
		{"dblreq", "3.1.1.8 Extra Trailing Octets in a UDP Datagram", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "method (first message only)", string(r.Method), "REGISTER")
			eq(t, "Call-ID (compact I)", r.CallID().Value(), "dblreq.0ha0isndaksdj99sdfafnl3lk233412")
			eq(t, "CSeq", r.CSeq().Value(), "8 REGISTER")
			eq(t, "Via branch", pv(t, r.Via().Params, "branch"), "z9hG4bKkdjuw23492")
			eq(t, "body (trailing INVITE ignored)", len(r.Body()), 0)
		}},
		{"semiuri", "3.1.1.9 Semicolon-Separated Parameters in URI User Part", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "Request-URI user", r.Recipient.User, "user;par=u%40example.net")
			eq(t, "Request-URI host", r.Recipient.Host, "example.com")
			eq(t, "Request-URI params", len(r.Recipient.UriParams), 0)
			eq(t, "Accept (folded)", header(t, m, "Accept"), "application/sdp, application/pkcs7-mime, multipart/mixed, multipart/signed, message/sip, message/sipfrag")
			eq(t, "Max-Forwards", int(*r.MaxForwards()), 3)
		}},
		{"transports", "3.1.1.10 Varied and Unknown Transport Types", func(t *testing.T, m sip.Message) {
			vs := vias(m)
			eq(t, "Via count", len(vs), 5)
			if len(vs) == 5 {
				for i, tr := range []string{"UDP", "SCTP", "TLS", "UNKNOWN", "TCP"} {
					eq(t, "Via transport", vs[i].Transport, tr)
					eq(t, "Via host", vs[i].Host, "t"+string(rune('1'+i))+".example.com")
				}
			}
			eq(t, "Call-ID (two leading SP)", m.CallID().Value(), "transports.kijh4akdnaqjkwendsasfdj")
		}},
		{"mpart01", "3.1.1.11 Multipart MIME Message", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "method", string(r.Method), "MESSAGE")
			eq(t, "Content-Type", r.ContentType().Value(), "multipart/mixed;boundary=7a9cbec02ceef655")
			eq(t, "Content-Length", int(*r.ContentLength()), 553)
			raw := readTorture(t, "mpart01")
			eq(t, "body bytes", bytes.Equal(r.Body(), raw[bytes.Index(raw, []byte("\r\n\r\n"))+4:]), true)
			eq(t, "Via rport", r.Via().Params.Has("rport"), true)
			eq(t, "Via port", r.Via().Port, 5070)
			eq(t, "Route", r.Route().Address.String(), "sip:127.0.0.1:5080")
			eq(t, "Date", header(t, m, "Date"), "Sat, 15 Oct 2005 04:44:56 GMT")
		}},
		{"unreason", "3.1.1.12 Unusual Reason Phrase", func(t *testing.T, m sip.Message) {
			r := mustRes(t, m)
			eq(t, "status", r.StatusCode, 200)
			eq(t, "reason", r.Reason, "= 2**3 * 5**2 но сто девяносто девять - простое")
			eq(t, "CSeq", r.CSeq().Value(), "35 INVITE")
			eq(t, "To tag", pv(t, r.To().Params, "tag"), "2229")
			eq(t, "body", len(r.Body()), 154)
		}},
		{"noreason", "3.1.1.13 Empty Reason Phrase", func(t *testing.T, m sip.Message) {
			r := mustRes(t, m)
			eq(t, "status", r.StatusCode, 100)
			eq(t, "reason", r.Reason, "")
			eq(t, "Call-ID", r.CallID().Value(), "noreason.asndj203insdf99223ndf")
		}},
		{"unksm2", "3.3.4 Unknown URI Schemes in Header Fields (valid syntax; a registrar answers 400)", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "To scheme", r.To().Address.Scheme, "isbn")
			eq(t, "To", r.To().Address.String(), "isbn:2983792873")
			eq(t, "From", r.From().Address.String(), "http://www.example.com")
			eq(t, "From tag", pv(t, r.From().Params, "tag"), "3234233")
			eq(t, "Contact", contacts(m)[0].Address.String(), "name:John_Smith")
		}},
		{"bext01", "3.3.5 Proxy-Require and Require (valid syntax; see TestRFC4475Extensions)", func(t *testing.T, m sip.Message) {
			eq(t, "Require", header(t, m, "Require"), "nothingSupportsThis, nothingSupportsThisEither")
			eq(t, "Proxy-Require", header(t, m, "Proxy-Require"), "noProxiesSupportThis, norDoAnyProxiesSupportThis")
		}},
		{"invut", "3.3.6 Unknown Content-Type (the UAS answers 415)", func(t *testing.T, m sip.Message) {
			eq(t, "Content-Type", m.(*sip.Request).ContentType().Value(), "application/unknownformat")
			eq(t, "body", string(m.Body()), "<audio>\r\n <pcmu port=\"443\"/>\r\n</audio>\r\n")
		}},
		{"regaut01", "3.3.7 Unknown Authorization Scheme (digest answers 401)", func(t *testing.T, m sip.Message) {
			eq(t, "Authorization", header(t, m, "Authorization"), "NoOneKnowsThisScheme opaque-data=here")
		}},
		{"zeromf", "3.3.11 Max-Forwards of Zero (a proxy answers 483)", func(t *testing.T, m sip.Message) {
			eq(t, "Max-Forwards", int(*m.(*sip.Request).MaxForwards()), 0)
		}},
		{"cparam01", "3.3.12 REGISTER with a Contact Header Parameter", func(t *testing.T, m sip.Message) {
			c := contacts(m)[0]
			eq(t, "Contact URI", c.Address.String(), "sip:+19725552222@gw1.example.net")
			eq(t, "URI params", len(c.Address.UriParams), 0)
			eq(t, "header param", c.Params.Has("unknownparam"), true)
		}},
		{"cparam02", "3.3.13 REGISTER with a URL Parameter", func(t *testing.T, m sip.Message) {
			c := contacts(m)[0]
			eq(t, "URI param", c.Address.UriParams.Has("unknownparam"), true)
			eq(t, "header params", len(c.Params), 0)
		}},
		{"regescrt", "3.3.14 REGISTER with a URL Escaped Header", func(t *testing.T, m sip.Message) {
			c := contacts(m)[0]
			eq(t, "Contact URI header", pv(t, c.Address.Headers, "Route"), "%3Csip:sip.example.com%3E")
			eq(t, "Contact URI header (unescaped)", Unescape(pv(t, c.Address.Headers, "Route")), "<sip:sip.example.com>")
		}},
		{"sdp01", "3.3.15 Unacceptable Accept Offering (the UAS answers 406)", func(t *testing.T, m sip.Message) {
			eq(t, "Accept", header(t, m, "Accept"), "text/nobodyKnowsThis")
			eq(t, "body", len(m.Body()), 150)
		}},
		{"inv2543", "3.4.1 INVITE with RFC 2543 Syntax", func(t *testing.T, m sip.Message) {
			r := mustReq(t, m)
			eq(t, "no Max-Forwards", r.MaxForwards() == nil, true)
			eq(t, "Via without branch", r.Via().Params.Has("branch"), false)
			eq(t, "From without tag", r.From().Params.Has("tag"), false)
			eq(t, "To URI", r.To().Address.String(), "sip:+16505552222@ss1.example.net")
			eq(t, "To header param user=phone (no <>)", pv(t, r.To().Params, "user"), "phone")
			eq(t, "From URI param user=phone (in <>)", pv(t, r.From().Address.UriParams, "user"), "phone")
			eq(t, "body without Content-Length (UDP)", len(r.Body()), 105)
		}},
	}
	v := New()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Logf("RFC 4475 §%s", tc.section)
			m, err := v.Parse(readTorture(t, tc.name))
			if err != nil {
				t.Fatalf("valid message rejected: %v", err)
			}
			tc.check(t, m)
		})
	}
}

// TestRFC4475Invalid checks that every message of RFC 4475 §3.1.2 (and the
// §3.2/§3.3 messages an element must reject) is rejected with the status the
// RFC calls for, a reason naming the defect, and — when a response is due —
// a request good enough to build it.
func TestRFC4475Invalid(t *testing.T) {
	tests := []struct {
		name    string
		section string
		status  int    // 0: dropped
		field   string // Defect.Field
	}{
		{"badinv01", "3.1.2.1 Extraneous Header Field Separators", 400, "Via"},
		{"clerr", "3.1.2.2 Content Length Larger Than Message", 400, "Content-Length"},
		{"ncl", "3.1.2.3 Negative Content-Length", 400, "Content-Length"},
		{"scalar02", "3.1.2.4 Request Scalar Fields with Overlarge Values", 400, "CSeq"},
		{"scalarlg", "3.1.2.5 Response Scalar Fields with Overlarge Values", 0, "CSeq"},
		{"quotbal", "3.1.2.6 Unterminated Quoted String in Display Name", 400, "To"},
		{"ltgtruri", "3.1.2.7 <> Enclosing Request-URI", 400, "Request-URI"},
		{"lwsruri", "3.1.2.8 Malformed SIP Request-URI (embedded LWS)", 400, "Request-Line"},
		{"lwsstart", "3.1.2.9 Multiple SP Separating Request-Line Elements", 400, "Request-Line"},
		{"trws", "3.1.2.10 SP Characters at End of Request-Line", 400, "Request-Line"},
		{"escruri", "3.1.2.11 Escaped Headers in SIP Request-URI", 400, "Request-URI"},
		{"baddate", "3.1.2.12 Invalid Time Zone in Date Header Field", 400, "Date"},
		{"regbadct", "3.1.2.13 Failure to Enclose name-addr URI in <>", 400, "Contact"},
		{"badaspec", "3.1.2.14 Spaces within addr-spec", 400, "To"},
		{"baddn", "3.1.2.15 Non-token Characters in Display Name", 400, "From"},
		{"badvers", "3.1.2.16 Unknown Protocol Version", 505, "Request-Line"},
		{"mismatch01", "3.1.2.17 Start Line and CSeq Method Mismatch", 400, "CSeq"},
		{"mismatch02", "3.1.2.18 Unknown Method with CSeq Method Mismatch", 400, "CSeq"},
		{"bigcode", "3.1.2.19 Overlarge Response Code", 0, "Status-Line"},
		{"badbranch", "3.2.1 Missing Transaction Identifier", 400, "Via"},
		{"insuf", "3.3.1 Missing Required Header Fields", 400, "To"},
		{"unkscm", "3.3.2 Request-URI with Unknown Scheme", 416, "Request-URI"},
		{"novelsc", "3.3.3 Request-URI with Known but Atypical Scheme", 416, "Request-URI"},
		{"multi01", "3.3.8 Multiple Values in Single Value Required Fields", 400, "To"},
		{"mcl01", "3.3.9 Multiple Content-Length Values", 400, "Content-Length"},
		{"bcast", "3.3.10 200 OK Response with Broadcast Via Header Field Value", 0, "Via"},
	}
	v := New()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Logf("RFC 4475 §%s", tc.section)
			m, err := v.Parse(readTorture(t, tc.name))
			if err == nil {
				t.Fatalf("invalid message accepted:\n%s", m)
			}
			code, d := statusOf(t, err)
			eq(t, "status", code, tc.status)
			if d == nil {
				t.Fatalf("no Defect in %v", err)
			}
			eq(t, "defect field", d.Field, tc.field)
			if tc.status == 0 {
				if m != nil {
					if res := sipstatus.Response(asRequest(m), err); res != nil {
						t.Fatalf("dropped message produced a response:\n%s", res)
					}
				}
				return
			}
			req := mustReq(t, m)
			res := sipstatus.Response(req, err)
			if res == nil {
				t.Fatal("no response built")
			}
			eq(t, "response status", res.StatusCode, tc.status)
			if !strings.Contains(res.Reason, tc.field) && tc.status == 400 {
				t.Errorf("reason phrase %q does not name %s", res.Reason, tc.field)
			}
			if b, ok := req.Via().Params.Get("branch"); ok {
				rb, _ := res.Via().Params.Get("branch")
				eq(t, "response Via branch", rb, b)
			}
			eq(t, "response version", res.SipVersion, "SIP/2.0")
			eq(t, "response Call-ID", res.CallID() != nil, req.CallID() != nil)
		})
	}
}

func asRequest(m sip.Message) *sip.Request {
	r, _ := m.(*sip.Request)
	return r
}

// TestRFC4475Extensions: bext01 (§3.3.5) is answered 420 with Unsupported
// listing exactly the unknown option tags, by a proxy for Proxy-Require and by
// a UAS for Require.
func TestRFC4475Extensions(t *testing.T) {
	data := readTorture(t, "bext01")
	for _, tc := range []struct {
		name        string
		v           *Validator
		unsupported string
	}{
		{"proxy", New(WithProxyRequire("path", "outbound")), "noProxiesSupportThis, norDoAnyProxiesSupportThis"},
		{"uas", New(WithRequire("path", "outbound", "gruu")), "nothingSupportsThis, nothingSupportsThisEither"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := tc.v.Parse(data)
			code, d := statusOf(t, err)
			eq(t, "status", code, 420)
			res := sipstatus.Response(mustReq(t, m), err)
			eq(t, "Unsupported", res.GetHeader("Unsupported").Value(), tc.unsupported)
			eq(t, "defect field", d.Field, map[string]string{"proxy": "Proxy-Require", "uas": "Require"}[tc.name])
		})
	}
	// Supported tags pass.
	if _, err := New(WithRequire("nothingsupportsthis", "NothingSupportsThisEither")).Parse(data); err != nil {
		t.Fatalf("supported option tags rejected: %v", err)
	}
}

// TestRFC4475MaxForwardsRequired: inv2543 (§3.4.1) has no Max-Forwards; a
// validator that requires it answers 400 naming it.
func TestRFC4475MaxForwardsRequired(t *testing.T) {
	_, err := New(WithMaxForwardsRequired()).Parse(readTorture(t, "inv2543"))
	code, d := statusOf(t, err)
	eq(t, "status", code, 400)
	eq(t, "field", d.Field, "Max-Forwards")
}

// TestSipgoDiffers records where sipgo's own parser (v1.7.2) departs from RFC
// 4475, which is what this package corrects. If sipgo fixes one, this test
// fails and the package documentation must be updated.
func TestSipgoDiffers(t *testing.T) {
	acceptsInvalid := []string{"badbranch", "baddate", "badvers", "escruri", "insuf", "mcl01", "mismatch01", "mismatch02", "multi01", "regbadct", "unkscm"}
	for _, name := range acceptsInvalid {
		if _, err := sip.ParseMessage(readTorture(t, name)); err != nil {
			t.Errorf("sipgo now rejects %s: %v", name, err)
		}
	}
	m, err := sip.ParseMessage(readTorture(t, "wsinv"))
	if err != nil {
		t.Fatalf("sipgo rejects wsinv: %v", err)
	}
	vs := vias(m)
	if len(vs) != 3 || vs[1].Transport == "TCP" {
		t.Errorf("sipgo now reads the wsinv Via values correctly: %v", vs)
	}
	m, err = sip.ParseMessage(readTorture(t, "intmeth"))
	if err != nil {
		t.Fatalf("sipgo rejects intmeth: %v", err)
	}
	if string(m.(*sip.Request).Method) == "!interesting-Method0123456789_*+`.%indeed'~" {
		t.Error("sipgo now keeps the case of the method")
	}
	if _, err := sip.ParseMessage(readTorture(t, "novelsc")); err == nil {
		t.Error("sipgo now reads the soap.beep Request-URI")
	}
}
