package sipstatus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

func testRequest(t *testing.T, method sip.RequestMethod) *sip.Request {
	t.Helper()
	raw := "" +
		string(method) + " sip:bob@example.test SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n" +
		"Max-Forwards: 70\r\n" +
		"To: <sip:bob@example.test>\r\n" +
		"From: <sip:alice@example.test>;tag=1928301774\r\n" +
		"Call-ID: a84b4c76e66710@pc33.example.test\r\n" +
		"CSeq: 314159 " + string(method) + "\r\n" +
		"Content-Length: 0\r\n\r\n"
	msg, err := sip.ParseMessage([]byte(raw))
	if err != nil {
		t.Fatalf("parse test request: %v", err)
	}
	return msg.(*sip.Request)
}

func TestOfMapping(t *testing.T) {
	cause := errors.New("registrar: expires 5 below minimum")
	tests := []struct {
		name       string
		err        error
		code       int
		reason     string
		headerName string
		headerVal  string
	}{
		{"nil", nil, 200, "OK", "", ""},
		{"plain", errors.New("boom"), 500, "Server Internal Error", "", ""},
		{"deadline", fmt.Errorf("rpc: %w", context.DeadlineExceeded), 504, "Server Time-out", "", ""},
		{"canceled", fmt.Errorf("rpc: %w", context.Canceled), 503, "Service Unavailable", "", ""},
		{"bad request", BadRequest("Bad CSeq", cause), 400, "Bad CSeq", "", ""},
		{"wrapped 423", fmt.Errorf("registrar: %w", IntervalTooBrief(3600*time.Second, cause)), 423, "Interval Too Brief", "Min-Expires", "3600"},
		{"423 rounds up", IntervalTooBrief(1500*time.Millisecond, cause), 423, "Interval Too Brief", "Min-Expires", "2"},
		{"503 retry", ServiceUnavailable(30*time.Second, cause), 503, "Service Unavailable", "Retry-After", "30"},
		{"420", BadExtension([]string{"foo", "bar"}, cause), 420, "Bad Extension", "Unsupported", "foo, bar"},
		{"401", Unauthorized([]sip.Header{sip.NewHeader("WWW-Authenticate", `Digest realm="x"`)}, cause), 401, "Unauthorized", "WWW-Authenticate", `Digest realm="x"`},
		{"407", ProxyAuthenticationRequired([]sip.Header{sip.NewHeader("Proxy-Authenticate", `Digest realm="x"`)}, cause), 407, "Proxy Authentication Required", "Proxy-Authenticate", `Digest realm="x"`},
		{"416", UnsupportedURIScheme(cause), 416, "Unsupported URI Scheme", "", ""},
		{"505", VersionNotSupported(cause), 505, "Version Not Supported", "", ""},
		{"513", MessageTooLarge(cause), 513, "Message Too Large", "", ""},
		{"483", TooManyHops(cause), 483, "Too Many Hops", "", ""},
		{"430", FlowFailed(cause), 430, "Flow Failed", "", ""},
		{"439", FirstHopLacksOutbound(cause), 439, "First Hop Lacks Outbound Support", "", ""},
		{"480", TemporarilyUnavailable(cause), 480, "Temporarily Unavailable", "", ""},
		{"drop", Drop(cause), 0, "", "", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st := Of(tc.err)
			if st.Code != tc.code || (tc.code != 0 && st.Reason != tc.reason) {
				t.Fatalf("Of() = %d %q, want %d %q", st.Code, st.Reason, tc.code, tc.reason)
			}
			if st.Drop() != (tc.code == 0) {
				t.Fatalf("Drop() = %v for code %d", st.Drop(), tc.code)
			}
			if tc.headerName == "" {
				if len(st.Headers) != 0 {
					t.Fatalf("unexpected headers %v", st.Headers)
				}
				return
			}
			if len(st.Headers) != 1 || st.Headers[0].Name() != tc.headerName || st.Headers[0].Value() != tc.headerVal {
				t.Fatalf("headers = %v, want %s: %s", st.Headers, tc.headerName, tc.headerVal)
			}
		})
	}
}

func TestErrorChain(t *testing.T) {
	sentinel := errors.New("stale nonce")
	err := fmt.Errorf("digest: %w", Unauthorized(nil, sentinel))
	if !errors.Is(err, sentinel) {
		t.Fatal("cause not reachable through errors.Is")
	}
	if got := err.Error(); got != "digest: 401 Unauthorized: stale nonce" {
		t.Fatalf("Error() = %q", got)
	}
	if got := Drop(io.EOF).Error(); got != "dropped: EOF" {
		t.Fatalf("Drop Error() = %q", got)
	}
}

func TestResponse(t *testing.T) {
	req := testRequest(t, sip.REGISTER)
	res := Response(req, fmt.Errorf("registrar: %w", IntervalTooBrief(time.Hour, nil)))
	if res == nil {
		t.Fatal("no response")
	}
	if res.StatusCode != 423 || res.Reason != "Interval Too Brief" {
		t.Fatalf("status %d %q", res.StatusCode, res.Reason)
	}
	if h := res.GetHeader("Min-Expires"); h == nil || h.Value() != "3600" {
		t.Fatalf("Min-Expires = %v", h)
	}
	if res.CallID().Value() != req.CallID().Value() || res.CSeq().SeqNo != 314159 {
		t.Fatalf("Call-ID/CSeq not copied: %s", res)
	}
	if b, _ := res.Via().Params.Get("branch"); b != "z9hG4bK776asdhds" {
		t.Fatalf("Via not copied: %s", res)
	}
	if tag, ok := res.To().Params.Get("tag"); !ok || tag == "" {
		t.Fatalf("no To tag on final response: %s", res)
	}
	// Re-serialized response must parse.
	if _, err := sip.ParseMessage([]byte(res.String())); err != nil {
		t.Fatalf("response does not re-parse: %v\n%s", err, res)
	}

	if Response(req, Drop(nil)) != nil {
		t.Fatal("Drop produced a response")
	}
	if Response(testRequest(t, sip.ACK), BadRequest("Bad Via", nil)) != nil {
		t.Fatal("ACK was answered")
	}
	if Response(nil, BadRequest("x", nil)) != nil {
		t.Fatal("nil request answered")
	}
	if res := Response(req, errors.New("db down")); res == nil || res.StatusCode != 500 {
		t.Fatalf("untyped error: %v", res)
	}
}

func TestReasonPhrase(t *testing.T) {
	for code, want := range map[int]string{
		100: "Trying", 200: "OK", 401: "Unauthorized", 407: "Proxy Authentication Required",
		420: "Bad Extension", 423: "Interval Too Brief", 483: "Too Many Hops", 505: "Version Not Supported",
		513: "Message Too Large", 603: "Decline",
		// unregistered codes fall back to the x00 phrase of their class
		499: "Bad Request", 555: "Server Internal Error",
		// out of range
		99: "", 700: "",
	} {
		if got := ReasonPhrase(code); got != want {
			t.Errorf("ReasonPhrase(%d) = %q, want %q", code, got, want)
		}
	}
}
