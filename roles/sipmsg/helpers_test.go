package sipmsg

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

func readTorture(t testing.TB, name string) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "rfc4475", name+".sip"))
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return data
}

func eq[T comparable](t testing.TB, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func mustReq(t testing.TB, m sip.Message) *sip.Request {
	t.Helper()
	r, ok := m.(*sip.Request)
	if !ok {
		t.Fatalf("message is %T, want *sip.Request", m)
	}
	return r
}

func mustRes(t testing.TB, m sip.Message) *sip.Response {
	t.Helper()
	r, ok := m.(*sip.Response)
	if !ok {
		t.Fatalf("message is %T, want *sip.Response", m)
	}
	return r
}

func pv(t testing.TB, ps sip.HeaderParams, name string) string {
	t.Helper()
	v, ok := ps.Get(name)
	if !ok {
		t.Errorf("parameter %q missing in %v", name, ps)
	}
	return v
}

func header(t testing.TB, m sip.Message, name string) string {
	t.Helper()
	hs := m.GetHeaders(name)
	if len(hs) != 1 {
		t.Errorf("%d %s header fields, want 1", len(hs), name)
		return ""
	}
	return hs[0].Value()
}

func vias(m sip.Message) []*sip.ViaHeader {
	var out []*sip.ViaHeader
	for _, h := range m.GetHeaders("Via") {
		if v, ok := h.(*sip.ViaHeader); ok {
			out = append(out, v)
		}
	}
	return out
}

func contacts(m sip.Message) []*sip.ContactHeader {
	var out []*sip.ContactHeader
	for _, h := range m.GetHeaders("Contact") {
		if c, ok := h.(*sip.ContactHeader); ok {
			out = append(out, c)
		}
	}
	return out
}

// statusOf returns the status code and Defect of an error from this package.
func statusOf(t testing.TB, err error) (int, *Defect) {
	t.Helper()
	var se *sipstatus.Error
	if !errors.As(err, &se) {
		t.Fatalf("error %v is not a *sipstatus.Error", err)
	}
	d, _ := DefectOf(err)
	return se.Code, d
}
