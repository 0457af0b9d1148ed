package sipmsg

import (
	"path/filepath"
	"testing"
)

// BenchmarkPlain: the check every datagram goes through, on SIPp's INVITE.
func BenchmarkPlain(b *testing.B) {
	data := readFile(b, filepath.Join("testdata", "sipp", "invite-auth.sip"))
	v := New()
	b.ReportAllocs()
	for b.Loop() {
		if !v.Plain(data) {
			b.Fatal("not plain")
		}
	}
}

// BenchmarkParse: what a datagram that is not plain costs (the same INVITE).
func BenchmarkParse(b *testing.B) {
	data := readFile(b, filepath.Join("testdata", "sipp", "invite-auth.sip"))
	v := New()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseRegister: every REGISTER is parsed (SIPp's, with
// credentials).
func BenchmarkParseRegister(b *testing.B) {
	data := readFile(b, filepath.Join("testdata", "sipp", "register-auth.sip"))
	v := New()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
