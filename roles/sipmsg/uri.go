package sipmsg

import (
	"errors"
	"strings"
)

// uri is a strictly parsed URI (RFC 3261 §19.1, §25.1; absoluteURI of RFC 2396).
type uri struct {
	text    string // as on the wire
	scheme  string // lower-cased
	isSIP   bool   // sip or sips: the fields below are set
	user    string // escaped form
	hasUser bool
	pass    string // escaped form
	hasPass bool
	host    string // IPv6 with brackets
	port    int
	hasPort bool
	params  []param
	headers []param
}

// parseURI parses SIP-URI / SIPS-URI / absoluteURI.
func parseURI(s string) (uri, error) {
	u := uri{text: s}
	colon := strings.IndexByte(s, ':')
	if colon <= 0 {
		return u, errors.New("URI has no scheme")
	}
	scheme := s[:colon]
	if !isAlpha(scheme[0]) {
		return u, errors.New("URI scheme must start with a letter")
	}
	for i := 1; i < len(scheme); i++ {
		c := scheme[i]
		if !isAlphanum(c) && c != '+' && c != '-' && c != '.' {
			return u, errors.New("invalid character in URI scheme")
		}
	}
	u.scheme = strings.ToLower(scheme)
	rest := s[colon+1:]
	if u.scheme != "sip" && u.scheme != "sips" {
		// absoluteURI = scheme ":" ( hier-part / opaque-part ): 1*uric
		if rest == "" {
			return u, errors.New("URI has nothing after the scheme")
		}
		if err := checkChars(rest, func(c byte) bool { return isReserved(c) || isUnreserved(c) }); err != nil {
			return u, err
		}
		return u, nil
	}
	u.isSIP = true

	// [ userinfo "@" ]: no unescaped "@" can occur anywhere else.
	if at := strings.IndexByte(rest, '@'); at >= 0 {
		userinfo := rest[:at]
		rest = rest[at+1:]
		user, pass, hasPass := strings.Cut(userinfo, ":")
		if user == "" {
			return u, errors.New("empty user part in URI")
		}
		// user = 1*( unreserved / escaped / user-unreserved )
		if err := checkChars(user, func(c byte) bool {
			return isUnreserved(c) || strings.IndexByte("&=+$,;?/", c) >= 0
		}); err != nil {
			return u, err
		}
		// password = *( unreserved / escaped / "&" / "=" / "+" / "$" / "," )
		if err := checkChars(pass, func(c byte) bool {
			return isUnreserved(c) || strings.IndexByte("&=+$,", c) >= 0
		}); err != nil {
			return u, err
		}
		u.user, u.hasUser, u.pass, u.hasPass = user, true, pass, hasPass
	}

	end := strings.IndexAny(rest, ";?")
	if end < 0 {
		end = len(rest)
	}
	host, port, hasPort, ok := hostPort(rest[:end])
	if !ok {
		return u, errors.New("invalid host or port in URI")
	}
	u.host, u.port, u.hasPort = host, port, hasPort
	rest = rest[end:]

	// uri-parameters = *( ";" uri-parameter ); pname [ "=" pvalue ]
	for strings.HasPrefix(rest, ";") {
		rest = rest[1:]
		end := strings.IndexAny(rest, ";?")
		if end < 0 {
			end = len(rest)
		}
		name, value, hasValue := strings.Cut(rest[:end], "=")
		rest = rest[end:]
		if name == "" || (hasValue && value == "") {
			return u, errors.New("empty URI parameter")
		}
		if err := checkChars(name, paramChar); err != nil {
			return u, err
		}
		if err := checkChars(value, paramChar); err != nil {
			return u, err
		}
		pr := param{name: strings.ToLower(name), value: value, hasValue: hasValue}
		if hasParam(u.params, pr.name) {
			return u, errors.New("URI parameter " + name + " appears more than once")
		}
		u.params = append(u.params, pr)
	}

	// headers = "?" header *( "&" header ); header = hname "=" hvalue
	if strings.HasPrefix(rest, "?") {
		hnv := func(c byte) bool { return isUnreserved(c) || strings.IndexByte("[]/?:+$", c) >= 0 }
		for h := range strings.SplitSeq(rest[1:], "&") {
			name, value, ok := strings.Cut(h, "=")
			if !ok || name == "" {
				return u, errors.New("malformed URI header")
			}
			if value == "" {
				// Valid per the grammar but sipgo writes it back without the
				// "=", which no longer parses; refuse rather than corrupt.
				return u, errors.New("empty URI header value")
			}
			if err := checkChars(name, hnv); err != nil {
				return u, err
			}
			if err := checkChars(value, hnv); err != nil {
				return u, err
			}
			u.headers = append(u.headers, param{name: name, value: value, hasValue: true})
		}
		rest = ""
	}
	if rest != "" {
		return u, errors.New("unexpected characters after URI")
	}
	return u, nil
}

// checkChars accepts characters allowed by ok and escaped = "%" HEXDIG HEXDIG.
func checkChars(s string, ok func(byte) bool) error {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' {
			if i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
				return errors.New("bad %-escape in URI")
			}
			i += 2
			continue
		}
		if !ok(c) {
			return errors.New("character " + quoteByte(c) + " not allowed in URI")
		}
	}
	return nil
}

func quoteByte(c byte) string {
	if c >= 0x21 && c < 0x7f {
		return "'" + string(c) + "'"
	}
	const hex = "0123456789ABCDEF"
	return "0x" + string([]byte{hex[c>>4], hex[c&15]})
}

func hasParam(ps []param, name string) bool {
	for _, p := range ps {
		if p.name == name {
			return true
		}
	}
	return false
}

// paramChar: paramchar = param-unreserved / unreserved / escaped, with
// param-unreserved = "[" / "]" / "/" / ":" / "&" / "+" / "$" (RFC 3261 §25.1).
func paramChar(c byte) bool { return isUnreserved(c) || strings.IndexByte("[]/:&+$", c) >= 0 }

// EscapeParam makes s a URI parameter value (RFC 3261 §25.1 pvalue): every
// byte that is not a paramchar is %HH-escaped. Unescape reverses it.
func EscapeParam(s string) string {
	const hex = "0123456789ABCDEF"
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; paramChar(c) {
			b.WriteByte(c)
		} else {
			b.Write([]byte{'%', hex[c>>4], hex[c&15]})
		}
	}
	return b.String()
}

// Unescape decodes the %HH escapes of a URI component (RFC 3261 §19.1.2,
// §19.1.4: "sip:%61lice@example.test" and "sip:alice@example.test" are
// equal). Invalid escapes are left as they are.
func Unescape(s string) string {
	if strings.IndexByte(s, '%') < 0 {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) byte {
	switch {
	case isDigit(c):
		return c - '0'
	default:
		return c | 0x20 - 'a' + 10
	}
}

// ParamValue returns the value of a header parameter as read by this package:
// a quoted-string loses its quotes and quoted-pair escapes, a token is
// returned as is.
func ParamValue(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
		return unquote(v[1 : len(v)-1])
	}
	if strings.ContainsAny(v, " \t\\") {
		// stored as the inner text of a quoted-string (see package doc)
		return unquote(v)
	}
	return v
}

// unquote removes quoted-pair escapes from the inner text of a quoted-string.
func unquote(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// DisplayName returns a display name as read by this package (the inner text
// of a quoted-string, escapes kept) without its quoted-pair escapes.
func DisplayName(s string) string { return unquote(s) }
