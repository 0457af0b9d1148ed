package sipmsg

import (
	"errors"
	"strings"
	"time"
)

// canonicalName maps a lower-cased header field name, compact forms included
// (RFC 3261 §7.3.3 and the extensions that register one), to its canonical
// spelling. Unknown names return "".
func canonicalName(lower string) string {
	switch lower {
	case "via", "v":
		return "Via"
	case "to", "t":
		return "To"
	case "from", "f":
		return "From"
	case "call-id", "i":
		return "Call-ID"
	case "cseq":
		return "CSeq"
	case "max-forwards":
		return "Max-Forwards"
	case "content-length", "l":
		return "Content-Length"
	case "content-type", "c":
		return "Content-Type"
	case "content-encoding", "e":
		return "Content-Encoding"
	case "contact", "m":
		return "Contact"
	case "route":
		return "Route"
	case "record-route":
		return "Record-Route"
	case "path":
		return "Path"
	case "date":
		return "Date"
	case "expires":
		return "Expires"
	case "min-expires":
		return "Min-Expires"
	case "require":
		return "Require"
	case "proxy-require":
		return "Proxy-Require"
	case "supported", "k":
		return "Supported"
	case "unsupported":
		return "Unsupported"
	case "subject", "s":
		return "Subject"
	case "event", "o":
		return "Event"
	case "allow-events", "u":
		return "Allow-Events"
	case "refer-to", "r":
		return "Refer-To"
	case "referred-by", "b":
		return "Referred-By"
	case "session-expires", "x":
		return "Session-Expires"
	case "accept-contact", "a":
		return "Accept-Contact"
	case "reject-contact", "j":
		return "Reject-Contact"
	case "request-disposition", "d":
		return "Request-Disposition"
	case "identity", "y":
		return "Identity"
	case "identity-info", "n":
		return "Identity-Info"
	case "authorization":
		return "Authorization"
	case "proxy-authorization":
		return "Proxy-Authorization"
	case "www-authenticate":
		return "WWW-Authenticate"
	case "proxy-authenticate":
		return "Proxy-Authenticate"
	case "authentication-info":
		return "Authentication-Info"
	case "allow":
		return "Allow"
	case "accept":
		return "Accept"
	case "user-agent":
		return "User-Agent"
	case "server":
		return "Server"
	case "retry-after":
		return "Retry-After"
	case "timestamp":
		return "Timestamp"
	}
	return ""
}

// canonicalOf is canonicalName of name in any case. It lower-cases in a
// buffer on the stack, as strings.ToLower would not (it allocates for
// every name with a capital, which is every header of every message); no
// known name is longer than the buffer.
func canonicalOf(name string) string {
	var buf [32]byte
	if len(name) > len(buf) {
		return ""
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		buf[i] = c
	}
	return canonicalName(string(buf[:len(name)]))
}

// headerLine is one header field after unfolding.
type headerLine struct {
	name  string // canonical spelling when known, else as received
	value string // LWS folding replaced by one SP, trimmed
}

// splitHeaders unfolds the header lines (RFC 3261 §7.3.1: a line starting
// with white space continues the previous one) and splits name and value:
// field-name HCOLON field-value, HCOLON = *( SP / HTAB ) ":" SWS. Malformed
// lines are skipped; the first problem is returned with the good lines.
// fields is the header section after the start line, of at most n lines.
func splitHeaders(fields string, n int) ([]headerLine, error) {
	out := make([]headerLine, 0, n)
	var first error
	fail := func(err error) {
		if first == nil {
			first = err
		}
	}
	for line := range strings.SplitSeq(fields, "\r\n") {
		if line == "" {
			continue
		}
		if isWSP(line[0]) {
			if len(out) == 0 {
				fail(errors.New("continuation line before the first header field"))
				continue
			}
			last := &out[len(out)-1]
			cont := strings.Trim(line, " \t")
			if cont != "" {
				if last.value == "" {
					last.value = cont
				} else {
					last.value += " " + cont
				}
			}
			continue
		}
		colon := strings.IndexByte(line, ':')
		if colon < 0 {
			fail(errors.New("header line without a colon: \"" + safeText(line, 40) + "\""))
			continue
		}
		name := strings.TrimRight(line[:colon], " \t")
		if !isToken(name) {
			fail(errors.New("invalid header field name \"" + safeText(name, 40) + "\""))
			continue
		}
		if c := canonicalOf(name); c != "" {
			name = c
		}
		out = append(out, headerLine{name: name, value: strings.Trim(line[colon+1:], " \t")})
	}
	return out, first
}

// checkText validates a header value of a field this package does not parse:
// no control characters other than HTAB outside quoted strings, where
// quoted-pairs may escape them.
func checkText(v string) error {
	inQuote := false
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c > '"' && c != '\\' && c != 0x7f || c == ' ' || c == '!' {
			continue // printable and neither quote nor backslash: most of every value
		}
		switch {
		case inQuote && c == '\\':
			i++
			if i < len(v) && (v[i] == '\r' || v[i] == '\n') {
				return errors.New("escaped line break")
			}
		case c == '"':
			inQuote = !inQuote
		case c == '\t':
		case c < 0x20 || c == 0x7f:
			return errors.New("control character " + quoteByte(c) + " in value")
		}
	}
	return nil
}

// tokenList reads option-tag *(COMMA option-tag) (Require, Proxy-Require,
// Supported, Unsupported). An empty list is allowed when allowEmpty.
func tokenList(v string, allowEmpty bool) ([]string, error) {
	if strings.TrimSpace(v) == "" {
		if allowEmpty {
			return nil, nil
		}
		return nil, errors.New("empty option-tag list")
	}
	var tags []string
	for part := range strings.SplitSeq(v, ",") {
		t := strings.Trim(part, " \t")
		if !isToken(t) {
			return nil, errors.New("option-tag \"" + safeText(t, 40) + "\" is not a token")
		}
		tags = append(tags, t)
	}
	return tags, nil
}

// parseCSeq reads CSeq = 1*DIGIT LWS Method; the number must be below 2**31
// (RFC 3261 §8.1.1.5).
func parseCSeq(v string) (uint32, string, error) {
	i := 0
	for i < len(v) && isDigit(v[i]) {
		i++
	}
	if i == 0 {
		return 0, "", errors.New("sequence number missing")
	}
	num, ok := parseUint(v[:i], 1<<31-1)
	if !ok {
		return 0, "", errors.New("sequence number is not below 2**31")
	}
	rest := v[i:]
	method := strings.TrimLeft(rest, " \t")
	if len(method) == len(rest) {
		return 0, "", errors.New("no white space between number and method")
	}
	if !isToken(method) {
		return 0, "", errors.New("method is not a token")
	}
	return uint32(num), method, nil
}

// parseCallID reads callid = word [ "@" word ].
func parseCallID(v string) error {
	if v == "" {
		return errors.New("empty")
	}
	w1, w2, hasAt := strings.Cut(v, "@")
	for _, w := range []string{w1, w2} {
		for i := 0; i < len(w); i++ {
			if !isWordChar(w[i]) {
				return errors.New("character " + quoteByte(w[i]) + " not allowed")
			}
		}
	}
	if w1 == "" || (hasAt && w2 == "") {
		return errors.New("empty word")
	}
	return nil
}

// parseMediaType reads media-type = m-type SLASH m-subtype *(SEMI m-parameter)
// and returns it with the white space removed.
func parseMediaType(v string) (string, error) {
	p := &scanner{s: v}
	typ := p.token()
	if typ == "" || !p.sep('/') {
		return "", errors.New("not type/subtype")
	}
	sub := p.token()
	if sub == "" {
		return "", errors.New("missing subtype")
	}
	var b strings.Builder
	b.WriteString(typ)
	b.WriteByte('/')
	b.WriteString(sub)
	for p.sep(';') {
		// m-parameter = m-attribute EQUAL m-value; m-value = token / quoted-string
		name := p.token()
		if name == "" || !p.sep('=') {
			return "", errors.New("malformed parameter")
		}
		start := p.i
		if p.peek() == '"' {
			if _, ok := p.quotedString(); !ok {
				return "", errors.New("malformed quoted parameter value")
			}
		} else if p.token() == "" {
			return "", errors.New("missing parameter value")
		}
		b.WriteByte(';')
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(p.s[start:p.i])
	}
	p.sws()
	if !p.eof() {
		return "", errors.New("unexpected " + quoteByte(p.peek()))
	}
	return b.String(), nil
}

// checkDate reads SIP-date = rfc1123-date, whose zone is always "GMT"
// (RFC 3261 §20.17, RFC 4475 §3.1.2.12).
func checkDate(v string) error {
	const layout = "Mon, 02 Jan 2006 15:04:05 GMT"
	if len(v) != len(layout) || !strings.HasSuffix(v, " GMT") {
		return errors.New("not an RFC 1123 date in GMT")
	}
	if _, err := time.Parse(layout, v); err != nil {
		return errors.New("not an RFC 1123 date in GMT")
	}
	return nil
}
