package sipmsg

import (
	"errors"
	"strings"

	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// startLine is a read Request-Line or Status-Line (RFC 3261 §7.1, §7.2).
type startLine struct {
	request    bool
	method     string
	uri        sip.Uri
	version    string // "SIP/2.0" when the version is 2.0
	status     int
	reason     string
	defect     error // 400 for a malformed Request-Line
	versionErr error // 505
}

// isSIPVersion: SIP-Version = "SIP" "/" 1*DIGIT "." 1*DIGIT ("SIP" is
// case-insensitive in ABNF).
func isSIPVersion(s string) bool {
	if len(s) < 7 || !strings.EqualFold(s[:4], "SIP/") {
		return false
	}
	major, minor, ok := strings.Cut(s[4:], ".")
	return ok && isDigits(major) && isDigits(minor)
}

func isVersion20(s string) bool { return strings.EqualFold(s, "SIP/2.0") }

// parseStartLine classifies and reads the start line. An error means the line
// is neither a request nor a response: nothing can be answered.
func parseStartLine(line string) (startLine, error) {
	var sl startLine
	// On the stack for a Request-Line's three fields: every request
	// parsed goes through here.
	var room [4]string
	fields := room[:0]
	for f := range strings.FieldsSeq(line) {
		fields = append(fields, f)
	}
	switch {
	case len(fields) >= 2 && isSIPVersion(fields[0]):
		// Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
		rest := line[len(fields[0]):]
		if !strings.HasPrefix(rest, " ") {
			return sl, &Defect{Field: "Status-Line", Problem: "malformed"}
		}
		rest = rest[1:]
		code, reason, _ := strings.Cut(rest, " ")
		// A missing SP before an empty reason phrase is tolerated.
		n, ok := parseUint(code, 699)
		if len(code) != 3 || !ok || n < 100 {
			return sl, &Defect{Field: "Status-Line", Problem: "status code is not 100-699"}
		}
		for i := 0; i < len(reason); i++ {
			if c := reason[i]; (c < 0x20 && c != '\t') || c == 0x7f {
				return sl, &Defect{Field: "Status-Line", Problem: "control character in reason phrase"}
			}
		}
		sl.status, sl.reason = int(n), reason
		sl.version = fields[0]
		if isVersion20(sl.version) {
			sl.version = "SIP/2.0"
		} else {
			sl.versionErr = sipstatus.VersionNotSupported(&Defect{Field: "Status-Line", Problem: "SIP version " + safeText(fields[0], 20) + " is not supported"})
		}
		return sl, nil

	case len(fields) >= 3 && isToken(fields[0]) && isSIPVersion(fields[len(fields)-1]):
		// Request-Line = Method SP Request-URI SP SIP-Version
		sl.request = true
		sl.method = fields[0]
		sl.version = fields[len(fields)-1]
		sl.uri = sip.Uri{Scheme: "sip", Host: "invalid"} // replaced below when readable
		switch {
		case len(fields) != 3 || !singleSpaced(line, fields):
			sl.defect = badField("Request-Line", "elements must be separated by single SP with no other white space")
		case strings.HasPrefix(fields[1], "<"):
			sl.defect = badField("Request-URI", "must not be enclosed in <>")
		default:
			u, err := parseURI(fields[1])
			if err != nil {
				sl.defect = badField("Request-URI", err.Error())
				break
			}
			sl.uri = sipURI(u)
		}
		if isVersion20(sl.version) {
			sl.version = "SIP/2.0"
		} else {
			sl.versionErr = sipstatus.VersionNotSupported(&Defect{Field: "Request-Line", Problem: "SIP version " + safeText(sl.version, 20) + " is not supported"})
		}
		return sl, nil
	}
	return sl, errors.New("sipmsg: start line is neither a Request-Line nor a Status-Line")
}

// singleSpaced reports whether line is its three fields joined by single
// SPs (strings.Join(fields, " ") == line, without building the join).
func singleSpaced(line string, fields []string) bool {
	i, j := len(fields[0]), len(fields[0])+1+len(fields[1])
	return len(line) == j+1+len(fields[2]) && line[i] == ' ' && line[j] == ' '
}
