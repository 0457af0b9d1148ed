package digest

import (
	"errors"
	"strings"
)

// credentials are the parameters of one Authorization or Proxy-Authorization
// header field with the Digest scheme (RFC 3261 §25.1 digest-response).
//
// The parameters are a list, not a map: a digest-response has about ten,
// which a linear search reads as fast as a map lookup, and the map's
// inserts and growth were a tenth of the authenticator's CPU.
type credentials struct {
	params []param // lower-cased names, unquoted values; each name once
}

type param struct{ name, value string }

func (c credentials) get(name string) string {
	v, _ := c.lookup(name)
	return v
}

func (c credentials) has(name string) bool {
	_, ok := c.lookup(name)
	return ok
}

func (c credentials) lookup(name string) (string, bool) {
	for _, p := range c.params {
		if p.name == name {
			return p.value, true
		}
	}
	return "", false
}

// parseCredentials splits "scheme params". It returns the scheme and, when
// it is Digest, the parameters.
func parseCredentials(v string) (scheme string, c credentials, err error) {
	v = strings.TrimLeft(v, " \t")
	i := strings.IndexAny(v, " \t")
	if i < 0 {
		return v, c, nil
	}
	scheme = v[:i]
	if !strings.EqualFold(scheme, "Digest") {
		return scheme, c, nil
	}
	c.params = make([]param, 0, 10)
	rest := v[i:]
	for {
		rest = strings.TrimLeft(rest, " \t")
		// auth-param = token EQUAL ( token / quoted-string )
		j := 0
		for j < len(rest) && isTokenChar(rest[j]) {
			j++
		}
		if j == 0 {
			return scheme, c, errors.New("digest: malformed credentials: parameter name expected")
		}
		name := strings.ToLower(rest[:j])
		rest = strings.TrimLeft(rest[j:], " \t")
		if !strings.HasPrefix(rest, "=") {
			return scheme, c, errors.New("digest: malformed credentials: '=' expected after " + name)
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		var value string
		if strings.HasPrefix(rest, `"`) {
			// The value is a substring of the field unless it has
			// quoted-pairs (RFC 3261 §25.1), which are rare.
			var b []byte
			k := 1
			closed := false
			for ; k < len(rest); k++ {
				ch := rest[k]
				if ch == '\\' && k+1 < len(rest) {
					if b == nil {
						b = append(make([]byte, 0, len(rest)), rest[1:k]...)
					}
					k++
					b = append(b, rest[k])
					continue
				}
				if ch == '"' {
					closed = true
					break
				}
				if b != nil {
					b = append(b, ch)
				}
			}
			if !closed {
				return scheme, c, errors.New("digest: malformed credentials: unterminated quoted value of " + name)
			}
			value = rest[1:k]
			if b != nil {
				value = string(b)
			}
			rest = rest[k+1:]
		} else {
			k := 0
			for k < len(rest) && isTokenChar(rest[k]) {
				k++
			}
			if k == 0 {
				return scheme, c, errors.New("digest: malformed credentials: value expected for " + name)
			}
			value, rest = rest[:k], rest[k:]
		}
		if c.has(name) {
			return scheme, c, errors.New("digest: malformed credentials: " + name + " given twice")
		}
		c.params = append(c.params, param{name, value})
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return scheme, c, nil
		}
		if rest[0] != ',' {
			return scheme, c, errors.New("digest: malformed credentials: ',' expected after " + name)
		}
		rest = rest[1:]
	}
}

func isTokenChar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-.!%*_+`'~", c) >= 0
}

// writeQuoted writes s as a quoted-string (RFC 3261 §25.1), escaping '"'
// and '\'; a value without them (a nonce, nearly every realm) is copied
// whole.
func writeQuoted(b *strings.Builder, s string) {
	b.WriteByte('"')
	for {
		i := strings.IndexAny(s, `"\`)
		if i < 0 {
			break
		}
		b.WriteString(s[:i])
		b.WriteByte('\\')
		b.WriteByte(s[i])
		s = s[i+1:]
	}
	b.WriteString(s)
	b.WriteByte('"')
}

// challengeValue is one Digest challenge (RFC 3261 §25.1 challenge, RFC 8760
// §2.3): realm, nonce, algorithm, qop and, when set, stale=true.
func challengeValue(realm, nonce string, alg Algorithm, stale bool) string {
	var b strings.Builder
	b.Grow(len(realm) + len(nonce) + 80)
	b.WriteString("Digest realm=")
	writeQuoted(&b, realm)
	b.WriteString(", nonce=")
	writeQuoted(&b, nonce)
	b.WriteString(", algorithm=")
	b.WriteString(string(alg))
	b.WriteString(`, qop="auth"`)
	if stale {
		b.WriteString(", stale=true")
	}
	return b.String()
}
