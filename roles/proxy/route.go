package proxy

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/internal/growstack"
	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Causes of the proxy's error responses.
var (
	ErrLoop          = errors.New("proxy: loop detected")
	ErrTooManyHops   = errors.New("proxy: Max-Forwards exhausted")
	ErrUnknownUser   = errors.New("proxy: no such user")
	ErrNotRegistered = errors.New("proxy: user has no binding")
	ErrRelay         = errors.New("proxy: relaying to a foreign domain is not allowed")
	ErrNoTransaction = errors.New("proxy: no transaction for the CANCEL")
	ErrNoDialog      = errors.New("proxy: in-dialog request without this mesh's Route")
	ErrFlowGone      = errors.New("proxy: the flow no longer exists")
	ErrFlowForged    = errors.New("proxy: flow token not issued by this node")
	// ErrNoSuchDomain is what a Resolver's error wraps when a domain has
	// no SIP servers (404).
	ErrNoSuchDomain = errors.New("proxy: the domain has no SIP servers")
)

// maxTransaction bounds how long a proxied transaction may run (an INVITE
// ringing for 3 minutes is Timer C, RFC 3261 §16.8).
const maxTransaction = 3*time.Minute + 30*time.Second

// inbound is a request as it arrived.
type inbound struct {
	req      *sip.Request
	tx       sip.ServerTransaction
	flow     flow   // where it came from
	peer     bool   // from another mesh node
	respDest string // where responses go (RFC 3261 §18.2.2, RFC 3581)
	// source is the datagram's source as read, when the request came
	// outside a transaction on UDP (else nil): see flowToken.
	source net.Addr
	loop   string // loop-detection hash (§16.6 step 8)
	// ourRoute: the request came with a Route naming this node (§16.4),
	// as every request in a dialog it record-routed does.
	ourRoute bool
	branch   string // the branch to send with, when not a random one (indialog.go)
	// cancelled is closed when the UAC cancels an INVITE (the transaction
	// layer has answered 200 to the CANCEL and 487 to the INVITE).
	cancelled chan struct{}
}

// target is where one branch goes.
type target struct {
	ruri      sip.Uri
	routes    []sip.Header // Route entries to put on top
	transport string       // upper case
	dest      string       // host:port
	out       *flow        // when sent over a flow of this node
	// next are the targets to try in turn when this one fails in the way
	// fo says (RFC 5626 §5.3 flows of one instance, RFC 3263 §4.3 servers
	// of one domain).
	next []target
	fo   failover
}

// failover says when a branch gives way to the next target of its list.
// A target that cannot be sent at all, or whose transaction ends without
// a response (transport error, timeout), always does.
type failover int

const (
	noFailover failover = iota
	// flowFailover: RFC 5626 §5.3, another flow of the instance after
	// 430 (Flow Failed) or 408; any other final response ends the list.
	flowFailover
	// dnsFailover: RFC 3263 §4.3, the next server after 503.
	dnsFailover
)

// on reports whether the final response code passes the request on.
func (f failover) on(code int) bool {
	switch f {
	case flowFailover:
		return code == 430 || code == 408
	case dnsFailover:
		return code == 503 || code == 408
	}
	return false
}

// following returns the next target of t's list, which keeps the rest.
func (t target) following() target {
	n := t.next[0]
	n.next, n.fo = t.next[1:], t.fo
	return n
}

func (p *Proxy) onRequest(req *sip.Request, tx sip.ServerTransaction) {
	// sipgo runs each request in a new goroutine, and the path to the
	// forwarded datagram is deep: its stack grows once here, not thrice.
	growstack.Grow()
	if sip.IsReliable(req.Transport()) {
		if host, _, err := net.SplitHostPort(req.Source()); err == nil && !p.admit(host) {
			return // over the per-source limit: dropped (pike)
		}
	}
	// Streams and plain datagrams reach us unchecked (sipmsg.DatagramFilter).
	if err := p.valid.Validate(req); err != nil {
		if res := sipstatus.Response(req, err); res != nil {
			tx.Respond(res)
		}
		p.log.Debug("proxy: request rejected", "from", req.Source(), "err", err)
		return
	}
	if p.absorbed(req) {
		tx.Terminate() // a retransmission after the 2xx (accepted.go)
		return
	}
	in := p.inbound(req, tx)
	if req.IsAck() {
		if err := p.forwardAck(in); err != nil {
			p.log.Debug("proxy: ACK not forwarded", "call_id", callID(req), "err", err)
		}
		return
	}
	if req.IsCancel() {
		// A CANCEL matching a transaction is handled by the transaction
		// layer (200, then 487 and OnCancel); this one matches none.
		tx.Respond(sipstatus.Response(req, sipstatus.New(481, "", ErrNoTransaction)))
		return
	}
	base := p.ctx
	if base == nil {
		base = context.Background()
	}
	ctx, cancel := context.WithTimeout(base, maxTransaction)
	defer cancel()
	if err := p.process(ctx, in); err != nil {
		p.logFailure(in, err)
		if res := sipstatus.Response(req, err); res != nil {
			if err := tx.Respond(res); err != nil {
				p.log.Debug("proxy: response not sent", "err", err)
			}
		}
	}
}

// logFailure logs why a request gets an error response: a warning for
// the node's own failures (5xx), debug for the client's.
func (p *Proxy) logFailure(in *inbound, err error) {
	req := in.req
	st := sipstatus.Of(err)
	if st.Code >= 500 || st.Code == 0 {
		p.log.Warn("proxy: request failed", "method", string(req.Method), "call_id", callID(req), "from", in.flow.String(), "status", st.Code, "err", err)
	} else if p.log.Enabled(context.Background(), slog.LevelDebug) {
		// Checked first: a challenge (401/407) is part of nearly every
		// call and REGISTER, and the arguments cost allocations even
		// when the record is dropped.
		p.log.Debug("proxy: request refused", "method", string(req.Method), "call_id", callID(req), "status", st.Code, "err", err)
	}
}

func callID(m sip.Message) string {
	if c := m.CallID(); c != nil {
		return c.Value()
	}
	return ""
}

func (p *Proxy) inbound(req *sip.Request, tx sip.ServerTransaction) *inbound {
	src := req.Source()
	host, port, _ := net.SplitHostPort(src)
	in := &inbound{req: req, tx: tx, flow: flow{transport: sipmsg.Transport(req.Transport()), remote: src}}
	in.peer = p.cfg.Mesh.IsPeer(host)
	// RFC 3261 §18.2.1 and RFC 3581 §4: record where the request really
	// came from in the topmost Via, for the responses and for the proxies
	// downstream that send them back.
	if v := req.Via(); v != nil {
		if v.Host != host {
			v.Params.Add("received", host)
		}
		if rp, ok := v.Params.Get("rport"); ok && rp == "" {
			v.Params.Add("rport", port)
			if !v.Params.Has("received") {
				v.Params.Add("received", host)
			}
		}
	}
	in.respDest = responseDest(req)
	if req.IsInvite() && tx != nil {
		in.cancelled = make(chan struct{})
		var once sync.Once
		done := func() { once.Do(func() { close(in.cancelled) }) }
		if !tx.OnCancel(func(*sip.Request) { done() }) {
			done() // cancelled (or ended) before we got here
		}
	}
	return in
}

// loopKey is loopHash of the request, computed when first needed (a
// REGISTER answered here never needs it).
func (in *inbound) loopKey() string {
	if in.loop == "" {
		in.loop = loopHash(in.req)
	}
	return in.loop
}

// responseDest is where responses to req go (RFC 3261 §18.2.2, RFC 3581
// §4): the topmost Via's received address and rport, else its sent-by. It
// is what sipgo's Response.Destination gives, without building a response.
func responseDest(req *sip.Request) string {
	v := req.Via()
	if v == nil {
		return ""
	}
	host, port := v.Host, v.Port
	if port <= 0 {
		port = int(sip.DefaultPort(req.Transport()))
	}
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	if r, ok := v.Params.Get("rport"); ok && r != "" {
		if n, err := strconv.Atoi(r); err == nil {
			port = n
		}
	}
	// Mostly the source, which received and rport were just set from: its
	// text is made once per peer (peerAddr).
	if src := req.Source(); src != "" {
		if h, p, err := net.SplitHostPort(src); err == nil && h == host {
			if n, err := strconv.Atoi(p); err == nil && n == port {
				return src
			}
		}
	}
	return host + ":" + strconv.Itoa(port)
}

// loopHash hashes what identifies a request at this hop (RFC 3261 §16.6
// step 8): a request coming back with the same hash in one of our Vias is a
// loop; with another one (a different Request-URI) a spiral. The hash only
// has to tell requests apart, not resist forgery: 64-bit FNV-1a, fed the
// fields as sipgo writes them, with no string built per field.
func loopHash(req *sip.Request) string {
	h := new(fnv64a)
	*h = fnvOffset
	req.Recipient.StringWrite(h)
	for _, x := range []sip.Header{req.From(), req.To(), req.CallID()} {
		if x != nil {
			h.WriteString("\x00")
			x.StringWrite(h)
		}
	}
	if c := req.CSeq(); c != nil {
		var n [20]byte
		h.WriteString(string(strconv.AppendUint(n[:0], uint64(c.SeqNo), 10)))
	}
	for r := range sipmsg.Headers(req, "Route") {
		h.WriteString("\x00")
		r.StringWrite(h)
	}
	var sum [8]byte
	binary.BigEndian.PutUint64(sum[:], uint64(*h))
	return hex.EncodeToString(sum[:6])
}

// fnv64a is a 64-bit FNV-1a hash that sipgo can write strings to.
type fnv64a uint64

const (
	fnvOffset fnv64a = 14695981039346656037
	fnvPrime  fnv64a = 1099511628211
)

func (h *fnv64a) WriteString(s string) (int, error) {
	for i := 0; i < len(s); i++ {
		*h = (*h ^ fnv64a(s[i])) * fnvPrime
	}
	return len(s), nil
}

const branchMagic = "z9hG4bK-sm"

func (p *Proxy) branch(in *inbound) string {
	return branchMagic + in.loopKey() + "." + sip.GenerateBranchN(12)[len("z9hG4bK."):]
}

// isOwn reports whether u names this node (a Route or Request-URI).
func (p *Proxy) isOwn(u sip.Uri) bool {
	if !p.self[u.Host] {
		return false
	}
	if u.Port == 0 {
		return p.ports[5060] || p.ports[5061]
	}
	return p.ports[u.Port]
}

func (p *Proxy) process(ctx context.Context, in *inbound) error {
	req := in.req
	// §16.3 step 3.
	if mf := req.MaxForwards(); mf != nil && mf.Val() == 0 {
		if req.Method == sip.OPTIONS && p.isOwn(req.Recipient) {
			return in.tx.Respond(p.optionsOK(req))
		}
		return sipstatus.TooManyHops(ErrTooManyHops)
	}
	// §16.3 step 4. The key covers the Route set as received.
	key := in.loopKey()
	for h := range sipmsg.Headers(req, "Via") {
		v, ok := h.(*sip.ViaHeader)
		if !ok || !p.self[v.Host] || !p.ports[v.Port] {
			continue
		}
		if b, _ := v.Params.Get("branch"); strings.HasPrefix(b, branchMagic+key+".") {
			return sipstatus.New(482, "", ErrLoop)
		}
	}
	if req.IsInvite() {
		in.tx.Respond(sipstatus.NewResponse(req, 100, "Trying"))
	}
	p.awaitSubscribe(ctx, req)
	t, routed, err := p.routeTarget(in)
	if err != nil {
		return err
	}
	if routed {
		return p.proxy(ctx, in, []target{t}, false)
	}
	return p.requestURI(ctx, in)
}

// routeTarget applies loose routing (§16.4): it removes the Route entries
// naming this node and returns where the remaining route leads: a flow of
// this node named by a removed entry, or the next Route. routed is false
// when the Request-URI decides.
func (p *Proxy) routeTarget(in *inbound) (t target, routed bool, err error) {
	req := in.req
	via, popped, err := p.popOwnRoutes(req, in.flow)
	if err != nil {
		return target{}, false, err
	}
	in.ourRoute = popped
	if via != nil {
		return p.flowTarget(req.Recipient, nil, *via), true, nil
	}
	if h := req.Route(); h != nil {
		t, err := p.uriTarget(req.Recipient, nil, h.Address)
		return t, true, err
	}
	return target{}, false, nil
}

// popOwnRoutes removes the Route entries naming this node (§16.4), says
// whether there were any, and returns the flow named by the first of them
// that carries a flow token, unless that flow is from, the one the request
// came over (an outgoing request of the UA, RFC 5626 §5.3). A token this
// node did not issue is refused with 403 (§5.3: it was tampered with).
func (p *Proxy) popOwnRoutes(req *sip.Request, from flow) (via *flow, popped bool, err error) {
	for {
		h := req.Route()
		if h == nil || !p.isOwn(h.Address) {
			return via, popped, nil
		}
		if strings.HasPrefix(h.Address.User, flowPrefix) {
			f, ok := p.flows.parse(h.Address.User)
			if !ok {
				return nil, false, sipstatus.Forbidden(fmt.Errorf("%w: %s", ErrFlowForged, h.Address.String()))
			}
			if f != from && via == nil {
				via = &f
			}
		}
		req.RemoveHeader("Route")
		popped = true
	}
}

func (p *Proxy) flowTarget(ruri sip.Uri, routes []sip.Header, f flow) target {
	return target{ruri: ruri, routes: routes, transport: sip.NetworkToUpper(f.transport), dest: f.remote, out: &f}
}

// uriTarget sends to the host of next (the top Route, or the Request-URI).
func (p *Proxy) uriTarget(ruri sip.Uri, routes []sip.Header, next sip.Uri) (target, error) {
	tr := "UDP"
	if v, ok := next.UriParams.Get("transport"); ok && v != "" {
		tr = strings.ToUpper(v)
	}
	if next.IsEncrypted() && tr == "TCP" || next.IsEncrypted() && tr == "UDP" {
		tr = "TLS"
	}
	host := next.Host
	if strings.HasPrefix(host, "[") {
		host = strings.Trim(host, "[]")
	}
	if host == "" {
		return target{}, sipstatus.New(416, "", fmt.Errorf("proxy: cannot route to %s", next.String()))
	}
	port := next.Port
	if port == 0 {
		port = sip.DefaultPort(tr)
	}
	return target{ruri: ruri, routes: routes, transport: tr, dest: net.JoinHostPort(host, strconv.Itoa(port))}, nil
}

// requestURI routes on the Request-URI (§16.5): registrations, the
// cluster's domain (location service), this node, or elsewhere.
func (p *Proxy) requestURI(ctx context.Context, in *inbound) error {
	req := in.req
	ruri := req.Recipient
	ours := strings.EqualFold(ruri.Host, p.cfg.Domain)
	inDialog := false
	if to := req.To(); to != nil {
		inDialog = to.Params.Has("tag")
	}
	if p.isPresence(req) {
		return p.presence(ctx, in)
	}
	switch {
	case req.Method == sip.REGISTER:
		if !ours {
			return sipstatus.Forbidden(fmt.Errorf("%w: REGISTER for %s", ErrRelay, ruri.Host))
		}
		return p.register(ctx, in)
	case (p.isOwn(ruri) || ours) && ruri.User == "":
		// RFC 3261 §11: OPTIONS to the server itself (keep-alive pings).
		if req.Method == sip.OPTIONS {
			return in.tx.Respond(p.optionsOK(req))
		}
		return sipstatus.NotFound(fmt.Errorf("proxy: %s addressed to the node itself", req.Method))
	case ours && p.cfg.GRUUs != nil && ruri.UriParams.Has("gr"):
		// RFC 5627 §5.3: a GRUU reaches its instance in and out of
		// dialogs (a UA gives it as its Contact, so in-dialog requests
		// are sent to it).
		if !inDialog {
			if err := p.authorize(ctx, in); err != nil {
				return err
			}
		}
		return p.gruu(ctx, in)
	case ours && inDialog && !in.ourRoute && !in.peer:
		// Every dialog this mesh proxies carries its Route (it
		// record-routes them all, §16.6 step 4), so a request in a
		// dialog that came without one is not in a dialog through here:
		// 481, as Kamailio's default configuration answers 404. Routing
		// it on the Request-URI would reach the user's devices without
		// authorization (in-dialog requests are not challenged), and did
		// send it to the domain's DNS: SIPp's BYE on abort, during an
		// overload, left every worker waiting on lookups.
		return sipstatus.New(481, "", ErrNoDialog)
	case ours:
		// The location service, in a dialog routed here too: its remote
		// target is an AOR of the domain, which is this mesh's (§16.5).
		if !inDialog {
			if err := p.authorize(ctx, in); err != nil {
				return err
			}
		}
		return p.locate(ctx, in)
	case inDialog || in.peer:
		t, err := p.uriTarget(ruri, nil, ruri)
		if err != nil {
			return err
		}
		return p.proxy(ctx, in, []target{t}, false)
	case !ours && !p.isOwn(ruri) && p.relays(ruri.Host):
		return p.foreign(ctx, in)
	default:
		return sipstatus.Forbidden(fmt.Errorf("%w: %s", ErrRelay, ruri.Host))
	}
}

func (p *Proxy) optionsOK(req *sip.Request) *sip.Response {
	res := sipstatus.NewResponse(req, 200, "OK")
	res.AppendHeader(sip.NewHeader("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, SUBSCRIBE, NOTIFY, REFER, INFO, UPDATE, PRACK, PUBLISH"))
	tags := "path, outbound"
	if p.cfg.GRUUs != nil {
		tags += ", gruu"
	}
	res.AppendHeader(sip.NewHeader("Supported", tags))
	return res
}

// authorize challenges out-of-dialog requests from subscribers of the
// domain (407) unless they come from a mesh node.
func (p *Proxy) authorize(ctx context.Context, in *inbound) error {
	req := in.req
	switch req.Method {
	case sip.INVITE, sip.MESSAGE, sip.SUBSCRIBE, sip.PUBLISH, sip.REFER:
	default:
		return nil
	}
	from := req.From()
	if from == nil || !strings.EqualFold(from.Address.Host, p.cfg.Domain) {
		return nil
	}
	return p.verify(ctx, in)
}

// verify checks the credentials of a request whose From is a subscriber
// of the domain (407 without them), unless it comes from a mesh node.
func (p *Proxy) verify(ctx context.Context, in *inbound) error {
	req := in.req
	if p.cfg.Auth == nil || in.peer {
		return nil
	}
	from := req.From()
	user, err := p.cfg.Auth.Verify(ctx, req, true)
	if err != nil {
		return err
	}
	if user != from.Address.User {
		return sipstatus.Forbidden(fmt.Errorf("proxy: %s authenticated but From is %s", user, from.Address.User))
	}
	// The credentials were for us; do not hand them on (RFC 3261 §22.3).
	for req.RemoveHeader("Proxy-Authorization") {
	}
	return nil
}

// register handles a REGISTER for the domain: the edge adds Path with its
// flow token (RFC 3327 §4.2, RFC 5626 §5.1); the registrar processes it
// here or on the registrar ring's owner.
func (p *Proxy) register(ctx context.Context, in *inbound) error {
	req := in.req
	if p.cfg.Registrar != nil {
		res, err := p.registerHere(ctx, in, false)
		if err != nil {
			return err
		}
		return in.tx.Respond(res)
	}
	p.addPath(in)
	to := req.To()
	if to == nil {
		return sipstatus.BadRequest("Missing To", errors.New("proxy: REGISTER without To"))
	}
	addr, err := p.cfg.Mesh.RegistrarAddr(to.Address.User + "@" + strings.ToLower(to.Address.Host))
	if err != nil {
		return sipstatus.ServiceUnavailable(5*time.Second, fmt.Errorf("proxy: no registrar: %w", err))
	}
	return p.proxy(ctx, in, []target{{ruri: req.Recipient, transport: "UDP", dest: addr}}, false)
}

// addPath adds this edge to a REGISTER from a phone (not from a mesh peer,
// which added its own).
func (p *Proxy) addPath(in *inbound) {
	if in.peer {
		return
	}
	// The Path entry is how the mesh reaches this edge, so it names our
	// UDP address, the transport nodes use between themselves (as
	// Mesh.RegistrarAddr): with the flow's own transport, a node would
	// have to reach us over TLS or WSS, with certificates it cannot
	// check. The token still names the UA's flow.
	// Written out rather than through ownURI and sip.Uri: this is on
	// every REGISTER, and sip.Uri's String builds each part apart.
	addr, tr := p.ownAddr("udp")
	token := p.flowToken(in)
	var b strings.Builder
	b.Grow(len("<sip:@;transport=;lr;ob>") + len(token) + len(addr) + len(tr))
	b.WriteString("<sip:")
	b.WriteString(token)
	b.WriteByte('@')
	b.WriteString(addr)
	b.WriteString(";transport=")
	b.WriteString(tr)
	b.WriteString(";lr")
	// RFC 5626 §5.1: the first hop of an outbound registration says so
	// with "ob", which the registrar checks.
	if hasRegID(in.req) {
		b.WriteString(";ob")
	}
	b.WriteByte('>')
	in.req.PrependHeader(sip.NewHeader("Path", b.String()))
}

// flowToken is the token naming in's flow, remembered with its datagram's
// source (peerAddr) for the next REGISTER from there: an SBC or a trunk
// sends every one of its REGISTERs from one address, and signing the same
// flow again each time was a fortieth of a REGISTER's CPU (perf, 15,000/s).
func (p *Proxy) flowToken(in *inbound) string {
	src, ok := in.source.(*peerAddr)
	if !ok || in.flow.transport != "udp" || in.flow.remote != src.text {
		return p.flows.token(in.flow)
	}
	if t := src.token.Load(); t != nil && t.keys == p.flows {
		return t.text
	}
	t := &peerToken{keys: p.flows, text: p.flows.token(in.flow)}
	src.token.Store(t)
	return t.text
}

// registerHere has this node's registrar process a REGISTER (through a
// server transaction, or on the stateless path), and adds the edge's
// Flow-Timer to its 200.
func (p *Proxy) registerHere(ctx context.Context, in *inbound, retransmitted bool) (*sip.Response, error) {
	p.addPath(in)
	register := p.cfg.Registrar.Register
	if retransmitted {
		register = p.cfg.Registrar.Reregister
	}
	res, err := register(ctx, in.req, in.flow.String())
	if err != nil {
		return nil, err
	}
	p.flowTimer(in, res)
	return res, nil
}

// hasRegID reports whether a Contact of the request carries reg-id
// (RFC 5626 §4.2: the UA registers a flow).
func hasRegID(req *sip.Request) bool {
	for h := range sipmsg.Headers(req, "Contact") {
		if c, ok := h.(*sip.ContactHeader); ok && c.Params.Has("reg-id") {
			return true
		}
	}
	return false
}

// flowTimer adds Flow-Timer (RFC 5626 §5.4) to the 2xx of a REGISTER that
// the registrar accepted as outbound (it says "Require: outbound", §6), on
// the edge holding the UA's flow: the most seconds between the UA's
// keep-alives that keep the flow, and the NATs on its way, alive.
func (p *Proxy) flowTimer(in *inbound, res *sip.Response) {
	if in.peer || in.req.Method != sip.REGISTER || res.StatusCode/100 != 2 ||
		sipmsg.Header(res, "Flow-Timer") != nil || !sipmsg.HasOptionTag(res, "Require", "outbound") {
		return
	}
	d := p.cfg.FlowTimer
	if d <= 0 {
		// RFC 5626 §4.4.1's defaults: NAT bindings of UDP flows are
		// short-lived; connection-oriented flows keep longer.
		d = 120 * time.Second
		if in.flow.transport == "udp" {
			d = 29 * time.Second
		}
	}
	res.AppendHeader(sip.NewHeader("Flow-Timer", strconv.Itoa(int(d/time.Second))))
}

// ownURI is this node's URI on transport tr, with the token of f.
func (p *Proxy) ownURI(tr string, f *flow) sip.Uri {
	addr, tr := p.ownAddr(tr)
	host, port, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(port)
	u := sip.Uri{Scheme: "sip", Host: host, Port: n}
	if f != nil {
		u.User = p.flows.token(*f)
	}
	u.UriParams = sip.HeaderParams{}
	u.UriParams.Add("transport", tr)
	u.UriParams.Add("lr", "")
	return u
}

// ownAddr is this node's address ("host:port", IPv6 in brackets) on
// transport tr, else on UDP, else on any transport it listens on; on is
// the transport the address is on.
func (p *Proxy) ownAddr(tr string) (addr, on string) {
	if addr, ok := p.via[tr]; ok {
		return addr, tr
	}
	if addr := p.via["udp"]; addr != "" {
		return addr, "udp"
	}
	for t, a := range p.via {
		return a, t
	}
	return "", "udp"
}

// locate looks the AOR up and forks to its contacts (§16.5, §16.6).
func (p *Proxy) locate(ctx context.Context, in *inbound) error {
	ruri := in.req.Recipient
	if ruri.User == "" {
		return sipstatus.NotFound(fmt.Errorf("%w: no user in %s", ErrUnknownUser, ruri.String()))
	}
	aor := ruri.User + "@" + p.cfg.Domain
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	found, err := p.cfg.Locator.Locate(lctx, aor)
	cancel()
	if err != nil {
		return sipstatus.ServiceUnavailable(5*time.Second, fmt.Errorf("proxy: location of %s: %w", aor, err))
	}
	return p.forkTo(ctx, in, aor, found)
}

// gruu routes a request for a GRUU of the domain to the contacts of the
// instance it names and to no other contact of the AOR (RFC 5627 §5.3):
// 404 for a GRUU the domain did not issue or no longer honours, 480 when
// the instance has no binding now.
func (p *Proxy) gruu(ctx context.Context, in *inbound) error {
	ruri := in.req.Recipient
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	aor, found, err := p.cfg.GRUUs.LocateGRUU(lctx, ruri)
	cancel()
	if err != nil {
		var se *sipstatus.Error
		if errors.As(err, &se) {
			return err
		}
		return sipstatus.ServiceUnavailable(5*time.Second, fmt.Errorf("proxy: GRUU %s: %w", ruri.String(), err))
	}
	return p.forkTo(ctx, in, aor, found)
}

// forkTo forks the request to the contacts found for aor (§16.6): one
// branch per contact without an instance, and one at a time per instance,
// its other flows (lowest reg-id first) held back for when a flow fails
// (RFC 5626 §5.3). The edge answers 430 for a flow that is gone; as the
// authoritative proxy we try the next flow, and say 480 when none is left.
// No contact: 480 for a known user, 404 otherwise.
func (p *Proxy) forkTo(ctx context.Context, in *inbound, aor string, found []Target) error {
	var targets []target
	var insts []string
	flows := map[string][]Target{}
	for _, f := range found {
		if f.Instance == "" {
			if t, ok := p.usableContact(aor, f); ok {
				targets = append(targets, t)
			}
			continue
		}
		if _, ok := flows[f.Instance]; !ok {
			insts = append(insts, f.Instance)
		}
		flows[f.Instance] = append(flows[f.Instance], f)
	}
	for _, inst := range insts {
		fs := flows[inst]
		slices.SortStableFunc(fs, func(a, b Target) int { return cmp.Compare(a.RegID, b.RegID) })
		var chain []target
		for _, f := range fs {
			if t, ok := p.usableContact(aor, f); ok {
				chain = append(chain, t)
			}
		}
		if len(chain) > 0 {
			head := chain[0]
			head.next, head.fo = chain[1:], flowFailover
			targets = append(targets, head)
		}
	}
	if len(targets) == 0 {
		user, _, _ := strings.Cut(aor, "@")
		known := false
		if p.cfg.Users != nil {
			known, _ = p.cfg.Users.Known(ctx, user, p.cfg.Domain)
		}
		if known || len(found) > 0 {
			return sipstatus.TemporarilyUnavailable(fmt.Errorf("%w: %s", ErrNotRegistered, aor))
		}
		return sipstatus.NotFound(fmt.Errorf("%w: %s", ErrUnknownUser, aor))
	}
	return p.proxy(ctx, in, targets, true)
}

func (p *Proxy) usableContact(aor string, f Target) (target, bool) {
	t, err := p.contactTarget(f)
	if err != nil {
		p.log.Warn("proxy: unusable binding skipped", "aor", aor, "contact", f.URI, "err", err)
		return target{}, false
	}
	return t, true
}

// contactTarget turns a binding into a branch: Request-URI the contact,
// Route its Path; the Path entries naming this node are consumed here (we
// are the edge holding the flow).
func (p *Proxy) contactTarget(b Target) (target, error) {
	var ruri sip.Uri
	if err := sip.ParseUri(b.URI, &ruri); err != nil {
		return target{}, fmt.Errorf("contact %q: %w", b.URI, err)
	}
	var routes []sip.Header
	var via *flow
	for _, ps := range b.Path {
		var u sip.Uri
		var params sip.HeaderParams
		if _, err := sip.ParseAddressValue(ps, &u, &params); err != nil {
			return target{}, fmt.Errorf("path %q: %w", ps, err)
		}
		if len(routes) == 0 && p.isOwn(u) {
			if strings.HasPrefix(u.User, flowPrefix) {
				f, ok := p.flows.parse(u.User)
				if !ok {
					return target{}, fmt.Errorf("%w: path %s", ErrFlowForged, ps)
				}
				if via == nil {
					via = &f
				}
			}
			continue
		}
		routes = append(routes, &sip.RouteHeader{Address: u})
	}
	if via != nil && len(routes) == 0 {
		return p.flowTarget(ruri, nil, *via), nil
	}
	next := ruri
	if len(routes) > 0 {
		next = routes[0].(*sip.RouteHeader).Address
	}
	return p.uriTarget(ruri, routes, next)
}
