package sipmsg

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// agree checks the promise of Plain on data: when it says plain, sipgo's
// parser followed by Validate (for requests) reaches Parse's verdict, and an accepted
// message reads the same (key fields and sipgo's writing of it) both ways.
func agree(t *testing.T, v *Validator, data []byte) {
	t.Helper()
	if !v.Plain(data) {
		return
	}
	want, werr := v.Parse(data)
	// What the plain path does: sipgo reads it (a failure is a silent
	// drop), then the handler runs Validate.
	// Responses reach no handler: sipgo's reading is all.
	got, gerr := sip.ParseMessage(data)
	gcode := 0
	if req, isReq := got.(*sip.Request); gerr == nil && isReq {
		gerr = v.Validate(got)
		// What gets sent: nothing to an ACK (RFC 3261 §17).
		if res := sipstatus.Response(req, gerr); gerr != nil && res != nil {
			gcode = res.StatusCode
		}
	}
	if (werr == nil) != (gerr == nil) {
		t.Fatalf("plain message: Parse says %v, sipgo+Validate says %v\n%q", werr, gerr, data)
	}
	if werr != nil {
		if w := sipstatus.Of(werr).Code; w != gcode {
			t.Fatalf("plain message: Parse answers %d, sipgo+Validate %d (%v)\n%q", w, gcode, gerr, data)
		}
		return
	}
	if k1, k2 := keyFields(want), keyFields(got); k1 != k2 {
		t.Fatalf("plain message read differently:\nParse:\n%s\nsipgo:\n%s", k1, k2)
	}
	if w, g := fieldsOf(want), fieldsOf(got); w != g {
		t.Fatalf("plain message read differently:\nParse:\n%s\nsipgo:\n%s", w, g)
	}
}

// fieldsOf lists the header fields as sipgo writes them, names in their
// canonical spelling (Parse expands compact forms, sipgo keeps them).
func fieldsOf(m sip.Message) string {
	var b strings.Builder
	var hs []sip.Header
	switch x := m.(type) {
	case *sip.Request:
		hs = x.Headers()
	case *sip.Response:
		hs = x.Headers()
	}
	for _, h := range hs {
		name := h.Name()
		if c := canonicalOf(name); c != "" {
			name = c
		}
		b.WriteString(name + ": " + h.Value() + "\n")
	}
	return b.String() + string(m.Body())
}

// TestPlainAgreesWithParse runs the promise over the RFC 4475 messages and
// a call as SIPp sends it, whose messages but the REGISTERs must be plain.
func TestPlainAgreesWithParse(t *testing.T) {
	v := New()
	files, _ := filepath.Glob(filepath.Join("testdata", "rfc4475", "*.sip"))
	plain := 0
	for _, f := range files {
		data := readFile(t, f)
		agree(t, v, data)
		if v.Plain(data) {
			plain++
		}
	}
	t.Logf("%d of %d RFC 4475 messages are plain", plain, len(files))
	sipp, _ := filepath.Glob(filepath.Join("testdata", "sipp", "*.sip"))
	if len(sipp) < 10 {
		t.Fatalf("%d SIPp messages in testdata/sipp", len(sipp))
	}
	for _, f := range sipp {
		data := readFile(t, f)
		if want := !strings.Contains(f, "register"); v.Plain(data) != want {
			t.Errorf("%s: plain %v, want %v", f, !want, want)
		}
		agree(t, v, data)
	}
}

func readFile(t testing.TB, name string) []byte {
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// FuzzPlain: whatever Plain lets through, sipgo and Validate judge as Parse.
func FuzzPlain(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "*", "*.sip"))
	for _, name := range files {
		f.Add(readFile(f, name))
	}
	v := New()
	f.Fuzz(func(t *testing.T, data []byte) { agree(t, v, data) })
}

func TestHasFieldRaw(t *testing.T) {
	invite := string(readFile(t, filepath.Join("testdata", "sipp", "invite.sip")))
	auth := string(readFile(t, filepath.Join("testdata", "sipp", "invite-auth.sip")))
	cases := []struct {
		name, data, field string
		want              bool
	}{
		{"present", auth, "proxy-authorization", true},
		{"absent", invite, "proxy-authorization", false},
		{"any case", strings.Replace(invite, "\r\n\r\n", "\r\nPROXY-AUTHORIZATION: x\r\n\r\n", 1), "proxy-authorization", true},
		{"a longer name", strings.Replace(invite, "\r\n\r\n", "\r\nProxy-Authorization-X: x\r\n\r\n", 1), "proxy-authorization", false},
		{"in the body only", strings.Replace(invite, "\r\n\r\n", "\r\n\r\nProxy-Authorization: x\r\n", 1), "proxy-authorization", false},
		{"in a value", strings.Replace(invite, "\r\n\r\n", "\r\nX: Proxy-Authorization: x\r\n\r\n", 1), "proxy-authorization", false},
		{"the start line", "proxy-authorization: x\r\n\r\n", "proxy-authorization", false},
	}
	for _, c := range cases {
		if got := HasFieldRaw([]byte(c.data), c.field); got != c.want {
			t.Errorf("%s: HasFieldRaw = %v, want %v", c.name, got, c.want)
		}
	}
}
