package sipmsg

import (
	"errors"
	"strings"
)

// address is one value of To, From, Contact, Route or Record-Route:
// ( name-addr / addr-spec ) *( SEMI generic-param ), RFC 3261 §20.10, §25.1.
type address struct {
	display  string // quoted-string inner text (escapes kept) or tokens joined by SP
	quoted   bool
	angle    bool // name-addr form
	uri      uri
	params   []param
	wildcard bool // Contact: *
}

// parseAddresses reads one address (list == false) or a comma-separated list,
// appended to out (a caller's stack array spares the allocation for the
// usual one value). nameAddrOnly demands the name-addr form (Route,
// Record-Route).
func parseAddresses(out []address, v string, list, nameAddrOnly bool) ([]address, error) {
	p := &scanner{s: v}
	for {
		a, err := p.address(nameAddrOnly)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
		p.sws()
		if p.eof() {
			return out, nil
		}
		if p.peek() != ',' {
			return nil, errors.New("unexpected " + quoteByte(p.peek()) + " after address")
		}
		if !list {
			return nil, errors.New("more than one value in a single-value field")
		}
		p.i++
	}
}

func (p *scanner) address(nameAddrOnly bool) (address, error) {
	var a address
	p.sws()
	switch {
	case p.peek() == '"':
		qs, ok := p.quotedString()
		if !ok {
			return a, errors.New("unterminated or invalid quoted display name")
		}
		a.display, a.quoted = qs, true
		p.sws()
		if p.peek() != '<' {
			return a, errors.New("display name not followed by <URI>")
		}
	default:
		// display-name = *(token LWS): try tokens followed by "<".
		save := p.i
		var toks []string
		for {
			t := p.token()
			if t == "" {
				break
			}
			toks = append(toks, t)
			if !p.sws() {
				break
			}
		}
		switch {
		case p.peek() == '<':
			a.display = strings.Join(toks, " ")
		case len(toks) > 0 && p.peek() != ':' && strings.IndexByte(p.s[p.i:], '<') >= 0:
			// RFC 4475 §3.1.2.15: Bell, Alexander <sip:...>
			return a, errors.New("display name with non-token characters must be quoted")
		default:
			p.i = save
		}
	}

	if p.peek() == '<' {
		// LAQUOT addr-spec RAQUOT: nothing but the URI between the brackets.
		end := strings.IndexByte(p.s[p.i:], '>')
		if end < 0 {
			return a, errors.New("missing '>'")
		}
		text := p.s[p.i+1 : p.i+end]
		p.i += end + 1
		if text == "" {
			return a, errors.New("empty URI")
		}
		if strings.ContainsAny(text, " \t") {
			return a, errors.New("white space inside <URI>")
		}
		u, err := parseURI(text)
		if err != nil {
			return a, err
		}
		a.uri, a.angle = u, true
	} else {
		if nameAddrOnly {
			return a, errors.New("URI must be enclosed in <>")
		}
		start := p.i
		for !p.eof() && !isWSP(p.peek()) && p.peek() != ';' && p.peek() != ',' {
			p.i++
		}
		text := p.s[start:p.i]
		if text == "" {
			if !p.eof() && !isWSP(p.peek()) && p.peek() != ';' && p.peek() != ',' {
				return a, errors.New("unexpected " + quoteByte(p.peek()))
			}
			return a, errors.New("missing URI")
		}
		if text == "*" {
			a.wildcard = true
		} else {
			if strings.ContainsAny(text, "?<>\"") {
				// RFC 3261 §20.10: a URI with a comma, question mark or
				// semicolon MUST be enclosed in angle brackets.
				return a, errors.New("URI with '?' or brackets must be enclosed in <>")
			}
			u, err := parseURI(text)
			if err != nil {
				return a, err
			}
			a.uri = u
		}
	}

	for p.sep(';') {
		pr, ok := p.genericParam()
		if !ok {
			return a, errors.New("malformed parameter")
		}
		if hasParam(a.params, pr.name) {
			return a, errors.New("parameter " + pr.name + " appears more than once")
		}
		a.params = append(a.params, pr)
	}
	return a, nil
}
