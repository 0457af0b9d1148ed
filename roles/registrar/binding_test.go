package registrar

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"unsafe"
)

var sampleBindings = []Binding{
	{},
	{AOR: "alice@example.test", Contact: "sip:alice@192.0.2.1:5060", Q: 1, CallID: "a84b4c76e66710", CSeq: 314159, ExpiresAt: 1795000000},
	{AOR: "bob@example.test", Contact: "<sip:bob@[2001:db8::1]:5061;transport=tls>", Q: 0.5, CallID: "c", CSeq: 1<<32 - 1,
		Path: []string{"<sip:edge1.example.test;lr;ob>", "<sip:edge2.example.test;lr>"}, Instance: "<urn:uuid:00000000-0000-1000-8000-000A95A0E128>",
		RegID: 2, Received: "udp:198.51.100.7:40000", UserAgent: "SIPp/Linux", Node: "n1", ExpiresAt: -1},
}

func TestBindingRoundTrip(t *testing.T) {
	for _, b := range sampleBindings {
		got, err := DecodeBinding(b.Encode())
		if err != nil {
			t.Fatalf("%+v: %v", b, err)
		}
		if !reflect.DeepEqual(got, b) && !(len(b.Path) == 0 && len(got.Path) == 0) {
			t.Errorf("round trip:\n got %+v\nwant %+v", got, b)
		}
	}
}

// Values written by earlier versions, as JSON, are still read.
func TestBindingReadsJSON(t *testing.T) {
	b := sampleBindings[2]
	js, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeBinding(js)
	if err != nil || !reflect.DeepEqual(got, b) {
		t.Fatalf("DecodeBinding(JSON) = %+v, %v; want %+v", got, err, b)
	}
}

// A truncated or padded stored value is refused, never half read.
func TestBindingRefusesMalformed(t *testing.T) {
	full := sampleBindings[2].Encode()
	for _, v := range [][]byte{nil, {bindingFormat}, full[:len(full)-1], append(full[:len(full):len(full)], 0), []byte("{not json")} {
		if _, err := DecodeBinding(v); !errors.Is(err, ErrBadBinding) {
			t.Errorf("DecodeBinding(%q) error = %v, want ErrBadBinding", v, err)
		}
	}
}

// Newer reads the Call-ID and CSeq of a stored binding without decoding it.
func TestOrderOfDoesNotAllocate(t *testing.T) {
	v := sampleBindings[2].Encode()
	if n := testing.AllocsPerRun(100, func() { orderOf(v) }); n != 0 {
		t.Errorf("orderOf allocates %v times", n)
	}
}

func FuzzDecodeBinding(f *testing.F) {
	for _, b := range sampleBindings {
		f.Add(b.Encode())
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		b, err := DecodeBinding(v)
		if err != nil || !IsBinding(v) {
			return
		}
		// What decodes re-encodes to the same octets.
		if again := b.Encode(); string(again) != string(v) {
			t.Fatalf("%x decodes to %+v, which encodes to %x", v, b, again)
		}
	})
}

func BenchmarkBindingDecode(b *testing.B) {
	v := sampleBindings[2].Encode()
	js, _ := json.Marshal(sampleBindings[2])
	b.Run("stored", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			DecodeBinding(v)
		}
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			DecodeBinding(js)
		}
	})
}

// A record's ID is cut from its value when it is the contact or the
// instance, and is its own string otherwise; the value is the binding's
// stored form either way.
func TestEncodeRecordID(t *testing.T) {
	b := Binding{AOR: "alice@example.test", Contact: "sip:alice@192.0.2.1:5060", Instance: "<urn:uuid:00000000-0000-1000-8000-000a95a0e128>",
		CallID: "c1", CSeq: 7, Q: 1, ExpiresAt: 1_800_000_000}
	for _, tc := range []struct {
		id     string
		inside bool
	}{{b.Contact, true}, {b.Instance, true}, {b.Instance + ";reg-id=1", false}} {
		val, id := b.encodeRecord(tc.id)
		if id != tc.id {
			t.Fatalf("ID %q, want %q", id, tc.id)
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(val)))
		at := uintptr(unsafe.Pointer(unsafe.StringData(id)))
		if inside := at >= start && at+uintptr(len(id)) <= start+uintptr(len(val)); inside != tc.inside {
			t.Errorf("ID %q in the value's memory: %v, want %v", id, inside, tc.inside)
		}
		got, err := DecodeBinding(val)
		if err != nil || !reflect.DeepEqual(got, b) {
			t.Fatalf("value decodes to %+v, %v; want %+v", got, err, b)
		}
	}
}
