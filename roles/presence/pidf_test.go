package presence_test

import (
	"encoding/xml"
	"strings"
	"testing"

	"github.com/sipmesh/sipmesh/roles/presence"
)

func TestCompose(t *testing.T) {
	const rpid = `<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity="sip:a@example.test"><tuple id="p1"><status><basic>open</basic></status><rpid:activities><rpid:on-the-phone/></rpid:activities></tuple><note xml:lang="en">Busy</note></presence>`
	cases := []struct {
		name   string
		docs   []string
		tuples []string // id=basic in order
		has    []string // substrings of the result
		not    []string
	}{
		{name: "none", docs: nil, tuples: nil, has: []string{`entity="sip:a@example.test"/>`}},
		{name: "one", docs: []string{pidf("a@example.test", "t1=open")}, tuples: []string{"t1=open"}},
		{name: "two devices", docs: []string{pidf("a@example.test", "t1=open"), pidf("a@example.test", "t2=closed")}, tuples: []string{"t1=open", "t2=closed"}},
		{name: "two tuples in one", docs: []string{pidf("a@example.test", "t1=open", "t2=closed")}, tuples: []string{"t1=open", "t2=closed"}},
		{name: "same tuple id twice", docs: []string{pidf("a@example.test", "t=open"), pidf("a@example.test", "t=closed"), pidf("a@example.test", "t=open")},
			tuples: []string{"t=open", "t-2=closed", "t-3=open"}},
		{name: "broken document skipped", docs: []string{"<presence", pidf("a@example.test", "t1=open")}, tuples: []string{"t1=open"}},
		{name: "extensions and notes kept", docs: []string{rpid, pidf("a@example.test", "t2=closed")}, tuples: []string{"p1=open", "t2=closed"},
			has: []string{`xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid"`, `<rpid:on-the-phone`, `<note xml:lang="en">Busy</note>`}},
		{name: "escaping", docs: []string{strings.Replace(pidf("a@example.test", "t1=open"), "</tuple>", "<note>a &amp; b</note></tuple>", 1)}, tuples: []string{"t1=open"},
			has: []string{"a &amp; b"}, not: []string{"a & b"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := presence.Compose("sip:a@example.test", tc.docs)
			// The result is well-formed PIDF.
			var doc struct {
				XMLName xml.Name
				Tuples  []struct {
					ID string `xml:"id,attr"`
				} `xml:"urn:ietf:params:xml:ns:pidf tuple"`
			}
			if err := xml.Unmarshal(out, &doc); err != nil {
				t.Fatalf("not XML: %v\n%s", err, out)
			}
			if doc.XMLName.Space != "urn:ietf:params:xml:ns:pidf" || doc.XMLName.Local != "presence" {
				t.Fatalf("root %v", doc.XMLName)
			}
			if got := tuples(t, out); strings.Join(got, ",") != strings.Join(tc.tuples, ",") {
				t.Fatalf("tuples %v, want %v\n%s", got, tc.tuples, out)
			}
			for _, s := range tc.has {
				if !strings.Contains(string(out), s) {
					t.Fatalf("missing %q in\n%s", s, out)
				}
			}
			for _, s := range tc.not {
				if strings.Contains(string(out), s) {
					t.Fatalf("unexpected %q in\n%s", s, out)
				}
			}
		})
	}
}
