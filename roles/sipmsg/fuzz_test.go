package sipmsg

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// keyFields is what must survive a write and re-read of an accepted message.
func keyFields(m sip.Message) string {
	var b strings.Builder
	switch r := m.(type) {
	case *sip.Request:
		b.WriteString("REQ " + string(r.Method) + " " + r.Recipient.String() + "\n")
	case *sip.Response:
		b.WriteString("RES " + itoa(r.StatusCode) + " " + r.Reason + "\n")
	}
	b.WriteString("Call-ID " + m.CallID().Value() + "\n")
	b.WriteString("CSeq " + m.CSeq().Value() + "\n")
	for _, a := range []struct {
		n  string
		dn string
		u  sip.Uri
		p  sip.HeaderParams
	}{
		{"From", m.From().DisplayName, m.From().Address, m.From().Params},
		{"To", m.To().DisplayName, m.To().Address, m.To().Params},
	} {
		tag, _ := a.p.Get("tag")
		b.WriteString(a.n + " " + a.dn + "|" + a.u.String() + "|" + a.u.User + "|" + a.u.Host + "|" + itoa(a.u.Port) + "|tag=" + tag + "\n")
	}
	for _, v := range vias(m) {
		br, _ := v.Params.Get("branch")
		b.WriteString("Via " + v.Transport + " " + v.Host + ":" + itoa(v.Port) + " " + br + "\n")
	}
	for _, c := range contacts(m) {
		b.WriteString("Contact " + c.DisplayName + "|" + c.Address.String() + "|" + c.Params.ToString(';') + "\n")
	}
	if r, ok := m.(*sip.Request); ok && r.MaxForwards() != nil {
		b.WriteString("Max-Forwards " + itoa(int(*r.MaxForwards())) + "\n")
	}
	b.WriteString("Content-Length " + itoa(int(*m.ContentLength())) + "\n")
	b.WriteString("Body " + string(m.Body()))
	return b.String()
}

// FuzzParse: no input panics; a rejection is a *sipstatus.Error whose
// response (when one is due) can be built; an accepted message re-serializes
// (sipgo's writer) into one that is accepted again with the same key fields.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "rfc4475", "*.sip"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	v := New()
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := v.Parse(data)
		if err != nil {
			var se *sipstatus.Error
			if !errors.As(err, &se) {
				t.Fatalf("error is %T, not *sipstatus.Error: %v", err, err)
			}
			if se.Code != 0 {
				req, ok := m.(*sip.Request)
				if !ok || req.Via() == nil || req.IsAck() {
					t.Fatalf("response due (%d) but no answerable request: %v", se.Code, m)
				}
				res := sipstatus.Response(req, err)
				if res == nil || res.StatusCode != se.Code {
					t.Fatalf("response %v, want %d", res, se.Code)
				}
				_ = res.String()
			}
			return
		}
		out := m.String()
		m2, err := v.Parse([]byte(out))
		if err != nil {
			t.Fatalf("re-parse of accepted message failed: %v\ninput:\n%q\nwritten:\n%q", err, data, out)
		}
		if k1, k2 := keyFields(m), keyFields(m2); k1 != k2 {
			t.Fatalf("key fields changed:\n%s\n----\n%s\nwritten:\n%q", k1, k2, out)
		}
		// The stream reader frames the written message the same way.
		m3, n, err := v.ParseStream([]byte(out))
		if err != nil || n != len(out) {
			t.Fatalf("stream read of written message: n=%d/%d err=%v\n%q", n, len(out), err, out)
		}
		if !bytes.Equal(m3.Body(), m.Body()) {
			t.Fatalf("stream body differs")
		}
	})
}
