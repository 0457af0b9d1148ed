package sipmsg

import (
	"net/netip"
	"strings"
)

// Character classes of RFC 3261 §25.1.

func isAlpha(c byte) bool    { return c|0x20 >= 'a' && c|0x20 <= 'z' }
func isDigit(c byte) bool    { return c >= '0' && c <= '9' }
func isAlphanum(c byte) bool { return isAlpha(c) || isDigit(c) }
func isHex(c byte) bool      { return isDigit(c) || (c|0x20 >= 'a' && c|0x20 <= 'f') }
func isWSP(c byte) bool      { return c == ' ' || c == '\t' }

// isTokenChar: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~").
func isTokenChar(c byte) bool {
	if isAlphanum(c) {
		return true
	}
	switch c {
	case '-', '.', '!', '%', '*', '_', '+', '`', '\'', '~':
		return true
	}
	return false
}

// isWordChar: word = 1*(token chars / "(" / ")" / "<" / ">" / ":" / "\" / DQUOTE / "/" / "[" / "]" / "?" / "{" / "}").
func isWordChar(c byte) bool {
	if isTokenChar(c) {
		return true
	}
	switch c {
	case '(', ')', '<', '>', ':', '\\', '"', '/', '[', ']', '?', '{', '}':
		return true
	}
	return false
}

// isMark: mark = "-" / "_" / "." / "!" / "~" / "*" / "'" / "(" / ")".
func isMark(c byte) bool {
	switch c {
	case '-', '_', '.', '!', '~', '*', '\'', '(', ')':
		return true
	}
	return false
}

func isUnreserved(c byte) bool { return isAlphanum(c) || isMark(c) }

// isReserved: reserved = ";" / "/" / "?" / ":" / "@" / "&" / "=" / "+" / "$" / ",".
func isReserved(c byte) bool {
	switch c {
	case ';', '/', '?', ':', '@', '&', '=', '+', '$', ',':
		return true
	}
	return false
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// parseUint parses 1*DIGIT (leading zeros allowed) and reports whether the
// value is at most limit.
func parseUint(s string, limit uint64) (uint64, bool) {
	if !isDigits(s) {
		return 0, false
	}
	var v uint64
	for i := 0; i < len(s); i++ {
		v = v*10 + uint64(s[i]-'0')
		if v > limit {
			return 0, false
		}
	}
	return v, true
}

// scanner walks a header value after line unfolding, where LWS is 1*WSP and
// SWS is *WSP.
type scanner struct {
	s string
	i int
}

func (p *scanner) eof() bool { return p.i >= len(p.s) }

func (p *scanner) peek() byte {
	if p.i >= len(p.s) {
		return 0
	}
	return p.s[p.i]
}

// sws skips optional white space and reports whether any was skipped.
func (p *scanner) sws() bool {
	start := p.i
	for p.i < len(p.s) && isWSP(p.s[p.i]) {
		p.i++
	}
	return p.i > start
}

// sep consumes SWS c SWS (SEMI, COMMA, EQUAL, SLASH, HCOLON, ...).
func (p *scanner) sep(c byte) bool {
	save := p.i
	p.sws()
	if p.peek() != c {
		p.i = save
		return false
	}
	p.i++
	p.sws()
	return true
}

func (p *scanner) token() string {
	start := p.i
	for p.i < len(p.s) && isTokenChar(p.s[p.i]) {
		p.i++
	}
	return p.s[start:p.i]
}

// quotedString reads DQUOTE *(qdtext / quoted-pair) DQUOTE at the current
// position and returns the text between the quotes with escapes kept.
func (p *scanner) quotedString() (string, bool) {
	if p.peek() != '"' {
		return "", false
	}
	start := p.i + 1
	for i := start; i < len(p.s); i++ {
		c := p.s[i]
		switch {
		case c == '"':
			p.i = i + 1
			return p.s[start:i], true
		case c == '\\':
			// quoted-pair = "\" (%x00-09 / %x0B-0C / %x0E-7F)
			if i+1 >= len(p.s) {
				return "", false
			}
			n := p.s[i+1]
			if n == '\n' || n == '\r' || n > 0x7f {
				return "", false
			}
			i++
		case isWSP(c), c == 0x21, c >= 0x23 && c <= 0x5b, c >= 0x5d && c <= 0x7e, c >= 0x80:
			// qdtext = LWS / %x21 / %x23-5B / %x5D-7E / UTF8-NONASCII
		default:
			return "", false
		}
	}
	return "", false
}

// param is a generic-param, a via-param or a uri-parameter.
type param struct {
	name     string // lower-cased
	value    string // as on the wire; quoted strings with their quotes
	hasValue bool
}

// genericParam reads token [ EQUAL gen-value ]; gen-value = token / host /
// quoted-string.
func (p *scanner) genericParam() (param, bool) {
	name := p.token()
	if name == "" {
		return param{}, false
	}
	pr := param{name: strings.ToLower(name)}
	if !p.sep('=') {
		return pr, true
	}
	pr.hasValue = true
	switch c := p.peek(); {
	case c == '"':
		start := p.i
		if _, ok := p.quotedString(); !ok {
			return param{}, false
		}
		pr.value = p.s[start:p.i]
	case c == '[':
		end := strings.IndexByte(p.s[p.i:], ']')
		if end < 0 || !isIPv6Reference(p.s[p.i:p.i+end+1]) {
			return param{}, false
		}
		pr.value = p.s[p.i : p.i+end+1]
		p.i += end + 1
	default:
		pr.value = p.token()
		if pr.value == "" {
			return param{}, false
		}
	}
	return pr, true
}

// Host grammar, RFC 3261 §25.1.

// isHost: host = hostname / IPv4address / IPv6reference.
func isHost(s string) bool {
	if s == "" {
		return false
	}
	if s[0] == '[' {
		return isIPv6Reference(s)
	}
	return isIPv4(s) || isHostname(s)
}

func isIPv4(s string) bool {
	for i := range 4 {
		part, rest, more := strings.Cut(s, ".")
		if more != (i < 3) || len(part) > 3 {
			return false
		}
		if _, ok := parseUint(part, 255); !ok {
			return false
		}
		s = rest
	}
	return true
}

func isIPv6Reference(s string) bool {
	if len(s) < 4 || s[0] != '[' || s[len(s)-1] != ']' {
		return false
	}
	a, err := netip.ParseAddr(s[1 : len(s)-1])
	return err == nil && a.Is6() && a.Zone() == ""
}

// isHostname: hostname = *( domainlabel "." ) toplabel [ "." ], where a label
// is alphanum *( alphanum / "-" ) alphanum-terminated and the toplabel starts
// with a letter.
func isHostname(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 255 {
		return false
	}
	last := ""
	for l := range strings.SplitSeq(s, ".") {
		if l == "" || !isAlphanum(l[0]) || !isAlphanum(l[len(l)-1]) {
			return false
		}
		for j := 0; j < len(l); j++ {
			if !isAlphanum(l[j]) && l[j] != '-' {
				return false
			}
		}
		last = l
	}
	return isAlpha(last[0])
}

// isIPAddress: IPv4address / IPv6address (via-received).
func isIPAddress(s string) bool {
	if isIPv4(s) {
		return true
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a.Is6() && a.Zone() == ""
}

// hostPort splits host [ ":" port ] and validates both.
func hostPort(s string) (host string, port int, hasPort bool, ok bool) {
	host = s
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", 0, false, false
		}
		host = s[:end+1]
		rest := s[end+1:]
		if rest != "" {
			if rest[0] != ':' {
				return "", 0, false, false
			}
			v, okp := parseUint(rest[1:], 65535)
			if !okp {
				return "", 0, false, false
			}
			port, hasPort = int(v), true
		}
	} else if i := strings.LastIndexByte(s, ':'); i >= 0 {
		host = s[:i]
		v, okp := parseUint(s[i+1:], 65535)
		if !okp {
			return "", 0, false, false
		}
		port, hasPort = int(v), true
	}
	if !isHost(host) {
		return "", 0, false, false
	}
	return host, port, hasPort, true
}
