package sipmsg

import (
	"errors"
	"strings"
)

// via is one via-parm (RFC 3261 §20.42, §25.1):
// sent-protocol LWS sent-by *( SEMI via-params ).
type via struct {
	proto, version, transport string
	host                      string // IPv6 without brackets, as sipgo keeps it
	port                      int
	params                    []param
}

// branchCookie is the RFC 3261 §8.1.1.7 magic cookie.
const branchCookie = "z9hG4bK"

func parseVias(v string) ([]via, error) {
	p := &scanner{s: v}
	var out []via
	for {
		vp, err := p.via()
		if err != nil {
			return nil, err
		}
		out = append(out, vp)
		p.sws()
		if p.eof() {
			return out, nil
		}
		if p.peek() != ',' {
			return nil, errors.New("unexpected " + quoteByte(p.peek()) + " in Via")
		}
		p.i++
	}
}

func (p *scanner) via() (via, error) {
	var v via
	p.sws()
	// sent-protocol = protocol-name SLASH protocol-version SLASH transport
	v.proto = p.token()
	if v.proto == "" || !p.sep('/') {
		return v, errors.New("malformed sent-protocol")
	}
	v.version = p.token()
	if v.version == "" || !p.sep('/') {
		return v, errors.New("malformed sent-protocol")
	}
	v.transport = p.token()
	if v.transport == "" {
		return v, errors.New("missing transport")
	}
	if !p.sws() {
		return v, errors.New("missing white space before sent-by")
	}
	// sent-by = host [ COLON port ]
	host, err := p.sentByHost()
	if err != nil {
		return v, err
	}
	v.host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if p.sep(':') {
		start := p.i
		for isDigit(p.peek()) {
			p.i++
		}
		port, ok := parseUint(p.s[start:p.i], 65535)
		if !ok {
			return v, errors.New("invalid sent-by port")
		}
		v.port = int(port)
	}
	for p.sep(';') {
		pr, err := p.viaParam()
		if err != nil {
			return v, err
		}
		if hasParam(v.params, pr.name) {
			return v, errors.New("parameter " + pr.name + " appears more than once")
		}
		v.params = append(v.params, pr)
	}
	return v, nil
}

func (p *scanner) sentByHost() (string, error) {
	start := p.i
	if p.peek() == '[' {
		end := strings.IndexByte(p.s[p.i:], ']')
		if end < 0 {
			return "", errors.New("unterminated IPv6 reference in sent-by")
		}
		p.i += end + 1
	} else {
		for isAlphanum(p.peek()) || p.peek() == '-' || p.peek() == '.' {
			p.i++
		}
	}
	host := p.s[start:p.i]
	if !isHost(host) {
		return "", errors.New("invalid sent-by host")
	}
	return host, nil
}

// viaParam reads via-ttl / via-maddr / via-received / via-branch /
// response-port (RFC 3581) / via-extension and checks the value of the known
// ones.
func (p *scanner) viaParam() (param, error) {
	save := p.i
	name := strings.ToLower(p.token())
	if name == "received" {
		// via-received = "received" EQUAL (IPv4address / IPv6address)
		if !p.sep('=') {
			return param{}, errors.New("received without a value")
		}
		start := p.i
		for isHex(p.peek()) || p.peek() == ':' || p.peek() == '.' {
			p.i++
		}
		val := p.s[start:p.i]
		if !isIPAddress(val) {
			return param{}, errors.New("received is not an IP address")
		}
		return param{name: name, value: val, hasValue: true}, nil
	}
	p.i = save
	pr, ok := p.genericParam()
	if !ok {
		return param{}, errors.New("malformed parameter")
	}
	switch pr.name {
	case "branch":
		// via-branch = "branch" EQUAL token
		if !pr.hasValue || !isToken(pr.value) {
			return param{}, errors.New("branch must be a token")
		}
		if pr.value == branchCookie {
			// RFC 4475 §3.2.1: the cookie claims RFC 3261 transaction
			// identifiers but no identifier follows.
			return param{}, errors.New("branch is only the magic cookie z9hG4bK")
		}
	case "ttl":
		if _, ok := parseUint(pr.value, 255); !ok || len(pr.value) > 3 {
			return param{}, errors.New("ttl must be 0-255")
		}
	case "maddr":
		if !pr.hasValue || !isHost(pr.value) {
			return param{}, errors.New("maddr must be a host")
		}
	case "rport":
		if pr.hasValue {
			if _, ok := parseUint(pr.value, 65535); !ok {
				return param{}, errors.New("rport must be a port number")
			}
		}
	}
	return pr, nil
}

// salvageVia reads what a response needs from a Via value that failed the
// strict parse: the sent-protocol and sent-by of its first via-parm and its
// branch if readable. It reports false when even that is unreadable.
func salvageVia(v string) (via, bool) {
	first := v
	if i := strings.IndexAny(first, ";,"); i >= 0 {
		first = first[:i]
	}
	p := &scanner{s: first}
	out, err := p.via()
	if err != nil {
		return via{}, false
	}
	p.sws()
	if !p.eof() {
		return via{}, false
	}
	// Look for a usable branch in the rest of the first via-parm.
	rest := strings.TrimPrefix(v, first)
	if i := strings.IndexByte(rest, ','); i >= 0 {
		rest = rest[:i]
	}
	for part := range strings.SplitSeq(rest, ";") {
		name, value, ok := strings.Cut(part, "=")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if ok && strings.EqualFold(name, "branch") && isToken(value) {
			out.params = append(out.params, param{name: "branch", value: value, hasValue: true})
			break
		}
	}
	return out, true
}
