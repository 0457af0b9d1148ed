package sipstatus

import (
	"regexp"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
)

// NewResponse writes what sipgo's NewResponseFromRequest writes, To tag
// aside, and leaves the request as it was.
func TestNewResponseAsSipgo(t *testing.T) {
	const head = "sip:bob@example.test SIP/2.0\r\n" +
		"Record-Route: <sip:p1.example.test;lr>\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds;rport\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.9:5060;branch=z9hG4bKfirst\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:bob@example.test>TOTAG\r\n" +
		"From: \"Alice\" <sip:alice@example.test>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.example.test\r\n" +
		"CSeq: 314159 METHOD\r\n" +
		"Timestamp: 54\r\n" +
		"Contact: <sip:alice@192.0.2.1>\r\n" +
		"Content-Length: 0\r\n\r\n"
	tag := regexp.MustCompile(`(To: <sip:bob@example.test>;tag=)[^\r]*`)
	for _, method := range []string{"INVITE", "REGISTER", "BYE", "ACK", "SUBSCRIBE"} {
		for _, totag := range []string{"", ";tag=callee"} {
			for _, code := range []int{100, 180, 183, 200, 202, 407, 486, 500} {
				raw := method + " " + strings.Replace(strings.Replace(head, "TOTAG", totag, 1), "METHOD", method, 1)
				msg, err := sip.ParseMessage([]byte(raw))
				if err != nil {
					t.Fatal(err)
				}
				req := msg.(*sip.Request)
				req.SetSource("198.51.100.7:5071")
				req.SetTransport("UDP")
				before := req.String()
				want := sip.NewResponseFromRequest(req, code, "Reason", nil)
				got := NewResponse(req, code, "Reason")
				if req.String() != before {
					t.Fatalf("%s %d: the request changed:\n%s", method, code, req.String())
				}
				w, g := want.String(), got.String()
				if totag == "" && code != 100 {
					if !tag.MatchString(g) || tag.FindString(g) == tag.FindString(NewResponse(req, code, "Reason").String()) {
						t.Fatalf("%s %d: no fresh To tag:\n%s", method, code, g)
					}
					w, g = tag.ReplaceAllString(w, "$1T"), tag.ReplaceAllString(g, "$1T")
				}
				if g != w {
					t.Errorf("%s %d:\n got %q\nwant %q", method, code, g, w)
				}
				if got.Destination() != want.Destination() || got.Transport() != want.Transport() {
					t.Errorf("%s %d: destination %s %s, want %s %s", method, code, got.Transport(), got.Destination(), want.Transport(), want.Destination())
				}
			}
		}
	}
	req := sip.NewRequest(sip.OPTIONS, sip.Uri{Host: "example.test"})
	if r := NewResponse(req, 404, ""); r.Reason != "Not Found" {
		t.Errorf("empty reason: got %q, want the table's", r.Reason)
	}
}

func BenchmarkNewResponse(b *testing.B) {
	msg, err := sip.ParseMessage([]byte("REGISTER sip:example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 127.0.80.101:5070;branch=z9hG4bK-1583-1-0;rport=5070;received=127.0.80.101\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:uas@example.test>;tag=1583SIPpTag001\r\nTo: <sip:uas@example.test>\r\n" +
		"Call-ID: 1-1583@127.0.80.101\r\nCSeq: 1 REGISTER\r\nContact: <sip:uas@127.0.80.101:5070>\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		b.Fatal(err)
	}
	req := msg.(*sip.Request)
	req.SetSource("127.0.80.101:5070")
	req.SetTransport("UDP")
	b.Run("sipstatus", func(b *testing.B) {
		for b.Loop() {
			NewResponse(req, 200, "OK")
		}
	})
	b.Run("sipgo", func(b *testing.B) {
		for b.Loop() {
			sip.NewResponseFromRequest(req, 200, "OK", nil)
		}
	})
}
