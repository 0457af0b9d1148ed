package sipmsg

import (
	"errors"
	"fmt"
	"strings"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Defect says what is wrong with a message: the header field (or
// "Request-Line", "Status-Line", "message") and the problem.
type Defect struct {
	Field   string
	Problem string
}

func (d *Defect) Error() string {
	return "sipmsg: " + d.Field + ": " + d.Problem
}

// Sentinel causes that callers may test with errors.Is.
var (
	// ErrIncomplete is returned by ParseStream when the buffer does not yet
	// hold a whole message; read more and call again.
	ErrIncomplete = errors.New("sipmsg: incomplete message")
	// ErrFraming marks stream errors after which message boundaries are lost
	// (missing or invalid Content-Length, oversized header section): answer
	// if a response was built, then close the connection.
	ErrFraming = errors.New("sipmsg: stream framing lost")
)

// badField is 400 with a reason phrase naming the field and the problem
// (RFC 3261 §21.4.1).
func badField(field, problem string) *sipstatus.Error {
	return sipstatus.BadRequest(fmt.Sprintf("Bad %s: %s", field, problem), &Defect{Field: field, Problem: problem})
}

func missingField(field string) *sipstatus.Error {
	return sipstatus.BadRequest("Missing "+field+" header field", &Defect{Field: field, Problem: "missing"})
}

func multipleField(field string) *sipstatus.Error {
	return sipstatus.BadRequest("Multiple "+field+" header fields", &Defect{Field: field, Problem: "appears more than once"})
}

// DefectOf returns the Defect behind an error returned by this package.
func DefectOf(err error) (*Defect, bool) {
	var d *Defect
	ok := errors.As(err, &d)
	return d, ok
}

// safeText keeps printable ASCII of untrusted text for use in a reason phrase.
func safeText(s string, max int) string {
	var b strings.Builder
	for i := 0; i < len(s) && b.Len() < max; i++ {
		c := s[i]
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		} else {
			b.WriteByte('?')
		}
	}
	return b.String()
}
