package presence

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// PIDF (RFC 3863) media type and namespace.
const (
	ContentTypePIDF = "application/pidf+xml"
	nsPIDF          = "urn:ietf:params:xml:ns:pidf"
	nsXML           = "http://www.w3.org/XML/1998/namespace"
)

// ErrBadPIDF is the cause of a 400 for a body that is not a PIDF document.
var ErrBadPIDF = errors.New("presence: body is not a PIDF document (RFC 3863)")

type pidfDoc struct {
	XMLName xml.Name   `xml:"presence"`
	Attrs   []xml.Attr `xml:",any,attr"`
	Tuples  []rawElem  `xml:"urn:ietf:params:xml:ns:pidf tuple"`
	Notes   []rawElem  `xml:"urn:ietf:params:xml:ns:pidf note"`
}

type rawElem struct {
	Attrs []xml.Attr `xml:",any,attr"`
	Inner []byte     `xml:",innerxml"`
}

func (e rawElem) attr(name string) string {
	for _, a := range e.Attrs {
		if a.Name.Space == "" && a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

// parsePIDF reads a PIDF document: a <presence> root in the PIDF namespace
// whose tuples each have an id and a <status> (RFC 3863 §4.1).
func parsePIDF(body []byte) (*pidfDoc, error) {
	var d pidfDoc
	if err := xml.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadPIDF, err)
	}
	if d.XMLName.Space != nsPIDF || d.XMLName.Local != "presence" {
		return nil, fmt.Errorf("%w: root is {%s}%s", ErrBadPIDF, d.XMLName.Space, d.XMLName.Local)
	}
	for i, t := range d.Tuples {
		if t.attr("id") == "" {
			return nil, fmt.Errorf("%w: tuple %d has no id", ErrBadPIDF, i+1)
		}
	}
	return &d, nil
}

// Compose returns the PIDF document of entity (a "pres:" or "sip:" URI)
// that merges the tuples and notes of docs, in order (RFC 3903 §5, RFC
// 3863): a tuple id already used is suffixed with "-2", "-3", … so that ids
// stay unique; namespace declarations of the roots are carried over (the
// first declaration of a prefix wins). A document that does not parse is
// skipped. With no tuple the result is an empty <presence/> element.
func Compose(entity string, docs []string) []byte {
	var (
		decls   []xml.Attr
		tuples  []rawElem
		notes   []rawElem
		seenIDs = map[string]bool{}
		seenNS  = map[string]bool{}
	)
	for _, s := range docs {
		d, err := parsePIDF([]byte(s))
		if err != nil {
			continue
		}
		for _, a := range d.Attrs {
			if a.Name.Space == "xmlns" && !seenNS[a.Name.Local] {
				seenNS[a.Name.Local] = true
				decls = append(decls, a)
			}
		}
		for _, t := range d.Tuples {
			id := t.attr("id")
			uniq := id
			for n := 2; seenIDs[uniq]; n++ {
				uniq = fmt.Sprintf("%s-%d", id, n)
			}
			seenIDs[uniq] = true
			t.Attrs = setAttr(t.Attrs, "id", uniq)
			tuples = append(tuples, t)
		}
		notes = append(notes, d.Notes...)
	}
	slices.SortStableFunc(decls, func(a, b xml.Attr) int { return strings.Compare(a.Name.Local, b.Name.Local) })
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	b.WriteString(`<presence xmlns="` + nsPIDF + `"`)
	for _, a := range decls {
		b.WriteString(` xmlns:` + a.Name.Local + `="`)
		xml.EscapeText(&b, []byte(a.Value))
		b.WriteString(`"`)
	}
	b.WriteString(` entity="`)
	xml.EscapeText(&b, []byte(entity))
	b.WriteString(`"`)
	if len(tuples) == 0 && len(notes) == 0 {
		b.WriteString("/>\n")
		return b.Bytes()
	}
	b.WriteString(">\n")
	for _, t := range tuples {
		writeElem(&b, "tuple", t)
	}
	for _, n := range notes {
		writeElem(&b, "note", n)
	}
	b.WriteString("</presence>\n")
	return b.Bytes()
}

func writeElem(b *bytes.Buffer, name string, e rawElem) {
	b.WriteString("<" + name)
	for _, a := range e.Attrs {
		switch a.Name.Space {
		case "":
			b.WriteString(" ")
		case "xml", nsXML:
			b.WriteString(" xml:")
		case "xmlns":
			b.WriteString(" xmlns:")
		default:
			continue // a namespaced attribute would need its prefix back
		}
		b.WriteString(a.Name.Local + `="`)
		xml.EscapeText(b, []byte(a.Value))
		b.WriteString(`"`)
	}
	b.WriteString(">")
	b.Write(e.Inner)
	b.WriteString("</" + name + ">\n")
}

func setAttr(attrs []xml.Attr, name, value string) []xml.Attr {
	out := slices.Clone(attrs)
	for i, a := range out {
		if a.Name.Space == "" && a.Name.Local == name {
			out[i].Value = value
			return out
		}
	}
	return append(out, xml.Attr{Name: xml.Name{Local: name}, Value: value})
}

// sortPubs orders publications oldest first (then by entity-tag), the
// order of composition.
func sortPubs(ps []*Publication) {
	slices.SortFunc(ps, func(a, b *Publication) int {
		if c := a.Published.Compare(b.Published); c != 0 {
			return c
		}
		return strings.Compare(a.ETag, b.ETag)
	})
}
