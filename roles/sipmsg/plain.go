package sipmsg

import (
	"bytes"
	"strings"
)

// plainMethods are the methods whose plain messages may skip Parse.
// REGISTER is not among them: sipgo accepts Contact values in REGISTERs
// that RFC 4475 §3.1.2.10 (regbadct) requires refused, and the stateless
// REGISTER path wants the message parsed anyway.
var plainMethods = map[string]bool{
	"INVITE": true, "ACK": true, "BYE": true, "CANCEL": true, "OPTIONS": true, "MESSAGE": true,
	"SUBSCRIBE": true, "NOTIFY": true, "PUBLISH": true, "INFO": true, "PRACK": true, "UPDATE": true, "REFER": true,
}

// Plain reports whether data is a message in the everyday form that
// sipgo's own parser reads exactly as Parse does, so that a datagram
// filter may hand the octets to sipgo unread (parsing a message twice and
// writing it once in between is most of what a proxy allocates) and leave
// the handler to run Validate, which then gives Parse's verdict.
//
// Everyday form: CRLF line ends and printable ASCII in the header section
// (no folding, tabs or escapes, which is where sipgo and RFC 4475 part;
// quoted strings only in credentials), a request line with a known method
// and a sip or sips URI or a status line, "Name: value" header fields whose
// values Parse and sipgo read alike (name-addrs in angle brackets, numbers,
// token lists, Via values starting with SIP/2.0/), no Date, Refer-To or
// Referred-By, and exactly one Content-Length equal to the body's length. Anything else is not plain
// and takes Parse. TestPlainAgreesWithParse and FuzzPlain hold this
// promise.
func (v *Validator) Plain(data []byte) bool {
	end := bytes.Index(data, []byte("\r\n\r\n"))
	if end < 0 || len(data) > v.maxMessageSize {
		return false
	}
	head, body := data[:end+2], data[end+4:]
	// The start line first: it turns away a REGISTER, which the stateless
	// REGISTER path wants parsed, before any byte of the rest is scanned.
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !plainStartLine(line) {
		return false
	}
	for i, c := range head {
		switch {
		case c == '\r':
			if i+1 >= len(head) || head[i+1] != '\n' {
				return false
			}
		case c == '\n':
			if i == 0 || head[i-1] != '\r' {
				return false
			}
		case c < 0x20 || c > 0x7e, c == '%', c == '\\':
			return false
		}
	}
	// Parse's checks of presence and multiplicity (RFC 3261 §8.1.1), kept
	// here so that a plain response, which no handler validates, needs
	// no Validate either.
	var vias, tos, froms, callIDs, cseqs, maxForwards, contentTypes, contentLengths int
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return false
		}
		name, value := line[:colon], bytes.TrimLeft(line[colon+1:], " ")
		for _, c := range name {
			if !isTokenChar(c) {
				return false
			}
		}
		// Lower-cased in a stack buffer: this runs for every header of
		// every datagram.
		var buf [32]byte
		if len(name) > len(buf) {
			return false // no header Plain knows is that long
		}
		for i, c := range name {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			buf[i] = c
		}
		lower := string(buf[:len(name)])
		if bytes.IndexByte(value, '"') >= 0 && !quotedOK[lower] {
			return false
		}
		switch lower {
		case "via", "v":
			vias++
			if !plainVia(value) {
				return false
			}
		case "to", "t", "from", "f", "contact", "m", "route", "record-route", "path":
			switch lower {
			case "to", "t":
				tos++
			case "from", "f":
				froms++
			}
			if !plainNameAddrs(value) {
				return false
			}
		case "call-id", "i":
			callIDs++
			if parseCallID(string(bytes.TrimRight(value, " "))) != nil {
				return false
			}
		case "cseq":
			cseqs++
			num, method, ok := bytes.Cut(value, []byte(" "))
			if _, okn := plainNumber(num); !ok || !okn || !isToken(string(method)) {
				return false
			}
		case "max-forwards", "expires", "min-expires":
			if lower == "max-forwards" {
				maxForwards++
			}
			if n, ok := plainNumber(value); !ok || lower == "max-forwards" && n > 255 {
				return false
			}
		case "content-length", "l":
			contentLengths++
			n, ok := plainNumber(value)
			if !ok || n != len(body) {
				return false
			}
		case "content-type", "c":
			contentTypes++
			// Parse drops white space from a media type; sipgo keeps it.
			if bytes.IndexByte(bytes.TrimRight(value, " "), ' ') >= 0 {
				return false
			}
			if _, err := parseMediaType(string(value)); err != nil {
				return false
			}
		case "require", "proxy-require", "supported", "k", "unsupported":
			for _, c := range value {
				if !isTokenChar(c) && c != ',' && c != ' ' {
					return false
				}
			}
		case "date", "refer-to", "r", "referred-by", "b":
			return false // read closely by Parse (RFC 4475 §3.1.2.9)
		}
	}
	return vias > 0 && tos == 1 && froms == 1 && callIDs == 1 && cseqs == 1 &&
		maxForwards <= 1 && contentTypes <= 1 && contentLengths == 1
}

// HasFieldRaw reports whether the header section of data has a field
// named name (given in lower case, matched in any case) in the form
// Plain accepts, the name followed at once by a colon. For a datagram
// Plain accepts it is exact; on others it may miss a field.
func HasFieldRaw(data []byte, name string) bool {
	head := data
	if end := bytes.Index(data, []byte("\r\n\r\n")); end >= 0 {
		head = data[:end]
	}
	for {
		i := bytes.Index(head, []byte("\r\n"))
		if i < 0 {
			return false
		}
		head = head[i+2:]
		if len(head) > len(name) && head[len(name)] == ':' && strings.EqualFold(string(head[:len(name)]), name) {
			return true
		}
	}
}

// plainVia: SIP/2.0/ without white space in the sent-protocol (RFC 4475
// §3.1.1.6 has some), a branch that is more than the magic cookie, and no
// broadcast address (RFC 3261 §18.2.2).
func plainVia(v []byte) bool {
	if bytes.Contains(v, []byte("255.255.255.255")) {
		return false
	}
	// Split without bytes.Split, as everywhere here: this runs for every
	// datagram, and a slice of pieces is an allocation each time.
	n := bytes.Count(v, []byte(",")) + 1
	i := -1
	for parm := range bytes.SplitSeq(v, []byte(",")) {
		i++
		if i > 0 {
			// "a, b" as sipp and sipgo join them; nothing else.
			var ok bool
			if parm, ok = bytes.CutPrefix(parm, []byte(" ")); !ok {
				return false
			}
		}
		rest, ok := bytes.CutPrefix(parm, []byte("SIP/2.0/"))
		if !ok {
			return false
		}
		tr, rest, ok := bytes.Cut(rest, []byte(" "))
		if !ok || !isLetters(tr) {
			return false
		}
		hostport, params, hasParams := bytes.Cut(rest, []byte(";"))
		if !plainHostPort(hostport) || hasParams && !plainParams(params) {
			return false
		}
		if !hasParams && i < n-1 {
			return false // sipgo looks for the comma among the parameters only
		}
	}
	// And Parse's own reader agrees.
	if vs, err := parseVias(string(v)); err != nil || len(vs) != n {
		return false
	}
	for rest := v; ; {
		i := bytes.Index(rest, []byte("branch="+branchCookie))
		if i < 0 {
			return true
		}
		rest = rest[i+len("branch="+branchCookie):]
		if len(rest) == 0 || rest[0] == ';' || rest[0] == ',' || rest[0] == ' ' {
			return false
		}
	}
}

// quotedOK are the fields whose plain values may hold quoted strings:
// credentials and challenges (RFC 3261 §25.1), which Parse takes as text.
var quotedOK = map[string]bool{
	"authorization": true, "proxy-authorization": true, "www-authenticate": true,
	"proxy-authenticate": true, "authentication-info": true,
}

func plainStartLine(line []byte) bool {
	if rest, ok := bytes.CutPrefix(line, []byte("SIP/2.0 ")); ok {
		return len(rest) >= 4 && isDigits(string(rest[:3])) && rest[0] >= '1' && rest[0] <= '6' && rest[3] == ' '
	}
	method, rest, _ := bytes.Cut(line, []byte(" "))
	uri, version, _ := bytes.Cut(rest, []byte(" "))
	if !plainMethods[string(method)] || string(version) != "SIP/2.0" {
		return false
	}
	return plainURI(uri)
}

func plainNumber(b []byte) (int, bool) {
	b = bytes.TrimRight(b, " ")
	if len(b) == 0 || len(b) > 7 || !isDigits(string(b)) {
		return 0, false
	}
	n := 0
	for _, c := range b {
		n = 10*n + int(c-'0')
	}
	return n, true
}

// plainNameAddrs: one or more "<sip:user@host:port;params>;params",
// comma-separated.
func plainNameAddrs(v []byte) bool {
	for one := range bytes.SplitSeq(v, []byte(",")) {
		one = bytes.TrimLeft(one, " ")
		inner, params, ok := bytes.Cut(one, []byte(">"))
		if !ok || len(inner) == 0 || inner[0] != '<' || !plainURI(inner[1:]) {
			return false
		}
		if len(params) > 0 && (params[0] != ';' || !plainParams(params[1:])) {
			return false
		}
	}
	return true
}

// plainURI: sip: or sips:, an optional user of unreserved characters, a
// host, a port and parameters.
func plainURI(u []byte) bool {
	rest, ok := bytes.CutPrefix(u, []byte("sip:"))
	if !ok {
		if rest, ok = bytes.CutPrefix(u, []byte("sips:")); !ok {
			return false
		}
	}
	hostport, params, hasParams := bytes.Cut(rest, []byte(";"))
	if hasParams && len(params) == 0 {
		return false
	}
	if user, host, ok := bytes.Cut(hostport, []byte("@")); ok {
		if len(user) == 0 {
			return false
		}
		for _, c := range user {
			if !isAlphanum(c) && bytes.IndexByte([]byte("-_.!~*'()&=+$/"), c) < 0 {
				return false
			}
		}
		hostport = host
	}
	if !plainHostPort(hostport) {
		return false
	}
	if hasParams {
		// uri-parameter characters (RFC 3261 §25.1), fewer than tokens.
		for _, c := range params {
			if !isAlphanum(c) && bytes.IndexByte([]byte("-_.!~*'();="), c) < 0 {
				return false
			}
		}
		return plainParams(params)
	}
	return true
}

// plainHostPort: a host name or IPv4 address (letters, digits, "-", "."
// starting with an alphanumeric) and an optional port.
func plainHostPort(hp []byte) bool {
	host, port, hasPort := bytes.Cut(hp, []byte(":"))
	if len(host) == 0 || !isAlphanum(host[0]) || !isAlphanum(host[len(host)-1]) {
		return false
	}
	for _, c := range host {
		if !isAlphanum(c) && c != '-' && c != '.' {
			return false
		}
	}
	// RFC 3261 §25.1: an IPv4 address, or a host name whose top label
	// starts with a letter.
	if len(host) > 255 {
		return false
	}
	var top []byte
	for l := range bytes.SplitSeq(host, []byte(".")) {
		if len(l) == 0 || len(l) > 63 || !isAlphanum(l[0]) || !isAlphanum(l[len(l)-1]) {
			return false
		}
		top = l
	}
	// Parse's own IPv4 rule (the conversion does not allocate: isIPv4
	// keeps nothing).
	if !isAlpha(top[0]) && !isIPv4(string(host)) {
		return false
	}
	if hasPort {
		// Digits only: sipgo reads "5060 " as no port at all.
		if !isDigits(string(port)) {
			return false
		}
		if n, _ := plainNumber(port); n == 0 || n > 65535 {
			return false
		}
	}
	return true
}

// plainParams: "name" or "name=value" tokens separated by ";", at least
// one, names in lower case.
func plainParams(ps []byte) bool {
	off := 0
	for p := range bytes.SplitSeq(ps, []byte(";")) {
		name, value, hasValue := bytes.Cut(p, []byte("="))
		if off > 0 {
			for q := range bytes.SplitSeq(ps[:off-1], []byte(";")) {
				if n, _, _ := bytes.Cut(q, []byte("=")); bytes.Equal(n, name) {
					return false // a parameter twice (Parse refuses it)
				}
			}
		}
		off += len(p) + 1
		if len(name) == 0 || !isToken(string(name)) || hasValue && (len(value) == 0 || !isToken(string(value))) ||
			bytes.IndexFunc(name, func(r rune) bool { return r >= 'A' && r <= 'Z' }) >= 0 {
			return false // Parse lower-cases parameter names
		}
	}
	return true
}

func isLetters(b []byte) bool {
	for _, c := range b {
		if !isAlpha(c) {
			return false
		}
	}
	return len(b) > 0
}
