package dnsprov

// wire.go is where Records meet miekg/dns: conversion to wire RRs and the
// client used for queries and updates. Moving to miekg/dns v2 starts here.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// toRR parses a Record into a wire RR.
func toRR(r Record) (dns.RR, error) {
	rr, err := dns.NewRR(r.String())
	if err != nil {
		return nil, fmt.Errorf("dnsprov: record %q: %w", r.String(), err)
	}
	return rr, nil
}

// fromRR converts an RR read from a server back into a Record.
func fromRR(rr dns.RR) Record {
	h := rr.Header()
	data := strings.TrimPrefix(rr.String(), h.String())
	return Record{Name: strings.ToLower(h.Name), Type: dns.TypeToString[h.Rrtype], TTL: h.Ttl, Data: data}
}

// sameRR reports whether a and b are the same RR ignoring TTL (RFC 2136
// §1.1.1: RRs are compared by name, class, type and RDATA).
func sameRR(a, b dns.RR) bool { return dns.IsDuplicate(a, b) }

// hostPortDefault adds port when addr has none.
func hostPortDefault(addr, port string) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	return net.JoinHostPort(strings.Trim(addr, "[]"), port)
}

// RcodeError is a server's refusal: its rcode and, when the server said
// so, the TSIG error (RFC 8945 §5.3.2), with the operation that failed.
type RcodeError struct {
	Op      string // what was asked, e.g. "update example.test."
	Server  string
	Rcode   int
	TSIGErr int // 0 when none
}

func (e *RcodeError) Error() string {
	s := fmt.Sprintf("dnsprov: %s at %s: server answered %s", e.Op, e.Server, RcodeName(e.Rcode))
	if e.TSIGErr != 0 {
		s += fmt.Sprintf(" (TSIG error %s)", RcodeName(e.TSIGErr))
	}
	if e.KeyRefused() {
		s += ": the TSIG key was refused; check dns.rfc2136 key_name, key_file and algorithm against the server's key"
	}
	return s
}

// KeyRefused reports whether the server refused the TSIG key: NOTAUTH
// (RFC 8945 §5.2: unknown key, bad signature, bad time) or a TSIG error.
func (e *RcodeError) KeyRefused() bool {
	return e.Rcode == dns.RcodeNotAuth || e.TSIGErr != 0
}

// Conflict reports whether an update failed because a prerequisite no
// longer held (RFC 2136 §3.2.5: YXDOMAIN, YXRRSET, NXDOMAIN, NXRRSET).
func (e *RcodeError) Conflict() bool {
	switch e.Rcode {
	case dns.RcodeYXDomain, dns.RcodeYXRrset, dns.RcodeNXRrset, dns.RcodeNameError:
		return true
	}
	return false
}

// RcodeName is the mnemonic of an rcode or TSIG error (BADSIG is 16).
func RcodeName(rc int) string {
	switch rc {
	case dns.RcodeBadSig:
		return "BADSIG"
	case dns.RcodeBadKey:
		return "BADKEY"
	case dns.RcodeBadTime:
		return "BADTIME"
	case dns.RcodeBadTrunc:
		return "BADTRUNC"
	}
	if s, ok := dns.RcodeToString[rc]; ok {
		return s
	}
	return fmt.Sprintf("RCODE%d", rc)
}

// tsigKey is a loaded TSIG key.
type tsigKey struct {
	name   string // FQDN
	alg    string // FQDN, e.g. hmac-sha256.
	secret string // base64
}

// client talks to one server.
type client struct {
	server  string
	net     string // "udp" (with TCP fallback on TC) or "tcp"
	timeout time.Duration
	key     *tsigKey
	now     func() time.Time

	// keep, for "tcp", reuses one connection across exchanges (RFC 7766
	// §6.2.1): a pass of the updater asks a dozen questions, and a
	// handshake each costs more than the question. Callers serialise.
	keep bool
	conn *dns.Conn
}

// close drops a kept connection.
func (c *client) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// roundTrip is one exchange, on the kept connection when there is one;
// a kept connection that failed (the server closed it while idle) is
// replaced once.
func (c *client) roundTrip(ctx context.Context, dc *dns.Client, msg *dns.Msg) (*dns.Msg, error) {
	if !c.keep || dc.Net != "tcp" {
		r, _, err := dc.ExchangeContext(ctx, msg, c.server)
		return r, err
	}
	for attempt := 0; ; attempt++ {
		fresh := c.conn == nil
		if fresh {
			conn, err := dc.DialContext(ctx, c.server)
			if err != nil {
				return nil, err
			}
			c.conn = conn
		}
		// A fresh dns.Conn per message: dns.Conn carries the previous
		// request's MAC into the next signature (meant for multi-message
		// transfers, RFC 8945 §5.3.1), which a server rejects as BADSIG.
		co := &dns.Conn{Conn: c.conn.Conn}
		r, _, err := dc.ExchangeWithConnContext(ctx, msg, co)
		if err != nil {
			c.close() // the stream may be out of step
			if r == nil && !fresh && attempt == 0 && ctx.Err() == nil {
				continue
			}
		}
		return r, err
	}
}

// exchange sends m and returns the answer; a TC answer over UDP is
// retried over TCP (RFC 7766 §5). A non-success rcode is an *RcodeError,
// still returned with the message.
func (c *client) exchange(ctx context.Context, m *dns.Msg, op string) (*dns.Msg, error) {
	return c.exchangeSigned(ctx, m, op, true)
}

func (c *client) exchangeSigned(ctx context.Context, m *dns.Msg, op string, sign bool) (*dns.Msg, error) {
	network := c.net
	for attempt := 0; attempt < 2; attempt++ {
		dc := &dns.Client{Net: network, Timeout: c.timeout, UDPSize: dns.DefaultMsgSize}
		msg := m
		if c.key != nil && sign {
			msg = m.Copy()
			msg.SetTsig(c.key.name, c.key.alg, 300, c.now().Unix())
			dc.TsigSecret = map[string]string{c.key.name: c.key.secret}
		}
		r, err := c.roundTrip(ctx, dc, msg)
		if r != nil && (r.Rcode != dns.RcodeSuccess || tsigError(r) != 0) && !(r.Rcode == dns.RcodeNameError && m.Opcode == dns.OpcodeQuery) {
			return r, &RcodeError{Op: op, Server: c.server, Rcode: r.Rcode, TSIGErr: tsigError(r)}
		}
		if err != nil {
			if errors.Is(err, dns.ErrSig) || errors.Is(err, dns.ErrTime) || errors.Is(err, dns.ErrNoSig) {
				return r, fmt.Errorf("dnsprov: %s at %s: the answer's TSIG signature did not verify (%w): the server does not share this key", op, c.server, err)
			}
			return r, fmt.Errorf("dnsprov: %s at %s: %w", op, c.server, err)
		}
		if r.Truncated && network == "udp" {
			network = "tcp"
			continue
		}
		return r, nil
	}
	return nil, fmt.Errorf("dnsprov: %s at %s: answer truncated over TCP", op, c.server)
}

func tsigError(m *dns.Msg) int {
	if t := m.IsTsig(); t != nil {
		return int(t.Error)
	}
	return 0
}

// query asks for name/qtype and returns the answer's RRs of that type.
// NXDOMAIN is an empty answer, not an error. Queries are not signed (see
// signedQuery).
func (c *client) query(ctx context.Context, name string, qtype uint16, rd bool) ([]dns.RR, *dns.Msg, error) {
	return c.ask(ctx, name, qtype, rd, false)
}

// signedQuery is query with TSIG, when the client has a key.
func (c *client) signedQuery(ctx context.Context, name string, qtype uint16) ([]dns.RR, *dns.Msg, error) {
	return c.ask(ctx, name, qtype, false, true)
}

func (c *client) ask(ctx context.Context, name string, qtype uint16, rd, sign bool) ([]dns.RR, *dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = rd
	m.SetEdns0(1232, false)
	op := "query " + dns.Fqdn(name) + " " + dns.TypeToString[qtype]
	if sign {
		op = "signed " + op
	}
	r, err := c.exchangeSigned(ctx, m, op, sign)
	if err != nil {
		return nil, r, err
	}
	var out []dns.RR
	for _, rr := range r.Answer {
		if rr.Header().Rrtype == qtype {
			out = append(out, rr)
		}
	}
	return out, r, nil
}

// question is one name and type to ask for.
type question struct {
	name  string
	qtype uint16
}

// batch asks all qs, unsigned, over UDP (TCP when truncated), a few at a
// time in parallel, and returns the answers' RRs of the asked type in the
// order of qs. NXDOMAIN is an empty answer; answers must be authoritative,
// or we would be reconciling against a cache. (Pipelining on one TCP
// connection, RFC 7766 §6.2.1.1, was tried: BIND's Nagle-delayed answers
// met our delayed ACKs and a batch took 40 ms.)
func (c *client) batch(ctx context.Context, qs []question) ([][]dns.RR, error) {
	out := make([][]dns.RR, len(qs))
	errs := make([]error, len(qs))
	udp := &client{server: c.server, net: "udp", timeout: c.timeout, now: c.now}
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i, q := range qs {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			rrs, r, err := udp.query(ctx, q.name, q.qtype, false)
			if err == nil && !r.Authoritative {
				err = fmt.Errorf("dnsprov: %s is not authoritative for %s: point dns.rfc2136.server at the zone's primary", c.server, q.name)
			}
			out[i], errs[i] = rrs, err
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return out, nil
}
