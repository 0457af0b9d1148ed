package proxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// branch is one client transaction of a proxied request.
type branch struct {
	t           target
	req         *sip.Request
	tx          sip.ClientTransaction
	provisional bool
	final       bool
	cancel      bool // CANCEL wanted: sent once a provisional arrived
	cancelled   bool
}

type branchEvent struct {
	i   int
	res *sip.Response
	err error // the transaction ended without a final response
}

// dialogForming reports whether the request creates a dialog that later
// requests must route through us (§16.6 step 4).
func dialogForming(req *sip.Request) bool {
	if to := req.To(); to != nil && to.Params.Has("tag") {
		return false
	}
	switch req.Method {
	case sip.INVITE, sip.SUBSCRIBE, sip.REFER, sip.NOTIFY:
		return true
	}
	return false
}

// prepare builds the request sent to t (§16.6 steps 1-8) from a copy of
// the received one, which its server transaction keeps.
func (p *Proxy) prepare(in *inbound, t target, recordRoute bool) *sip.Request {
	return p.rewrite(forwardCopy(in.req), in, t, recordRoute)
}

// forwardCopy is a new request with req's start line, body and header
// fields, sharing the header values rather than copying them: neither the
// proxy nor sipgo changes a header value it did not make for that request
// (rewrite replaces Max-Forwards instead of decrementing it; sipgo fills
// in only the Via that rewrite adds), and a deep copy of each forwarded
// request was a tenth of what a call allocated.
func forwardCopy(req *sip.Request) *sip.Request {
	out := sip.NewRequest(req.Method, req.Recipient)
	out.SipVersion = req.SipVersion
	for _, h := range req.Headers() {
		out.AppendHeader(h)
	}
	out.SetBody(req.Body())
	out.SetTransport(req.Transport())
	out.SetSource(req.Source())
	out.SetDestination(req.Destination())
	out.Laddr = req.Laddr
	return out
}

// rewrite turns out, the received request or a copy of it, into the
// request sent to t (§16.6 steps 1-8).
func (p *Proxy) rewrite(out *sip.Request, in *inbound, t target, recordRoute bool) *sip.Request {
	out.Recipient = *t.ruri.Clone()
	if len(t.routes) > 0 {
		hs := make([]sip.Header, len(t.routes))
		for i, h := range t.routes {
			hs[i] = sip.HeaderClone(h)
		}
		out.PrependHeader(hs...)
	}
	if mf := out.MaxForwards(); mf != nil {
		m := sip.MaxForwardsHeader(mf.Val() - 1) // a new value: mf may be the received request's
		out.ReplaceHeader(&m)
	} else {
		m := sip.MaxForwardsHeader(70)
		out.AppendHeader(&m)
	}
	tr := strings.ToLower(t.transport)
	if recordRoute {
		var inFlow *flow
		if !in.peer {
			inFlow = &in.flow
		}
		rin := p.ownURI(in.flow.transport, inFlow)
		rout := p.ownURI(tr, t.out)
		// RFC 5658: one entry per side when they differ; the entry facing
		// the callee ends on top.
		out.PrependHeader(&sip.RecordRouteHeader{Address: rin})
		if rout.String() != rin.String() {
			out.PrependHeader(&sip.RecordRouteHeader{Address: rout})
		}
	}
	via := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: t.transport, Params: sip.HeaderParams{}}
	if addr, ok := p.via[tr]; ok {
		host, port, _ := net.SplitHostPort(addr)
		via.Host = host
		via.Port, _ = strconv.Atoi(port)
	} else if addr, ok := p.via["udp"]; ok {
		via.Host, _, _ = net.SplitHostPort(addr)
	}
	branch := in.branch
	if branch == "" {
		branch = p.branch(in)
	}
	via.Params.Add("branch", branch)
	out.PrependHeader(via)
	out.SetTransport(t.transport)
	out.SetDestination(t.dest)
	out.SetSource("")
	out.Laddr = p.laddr(tr)
	return out
}

// laddr makes requests leave from our listening address: the UDP listener
// socket itself (NAT bindings, and peers recognise our source), or a TCP
// connection bound to our IP.
func (p *Proxy) laddr(tr string) sip.Addr {
	if tr == "udp" {
		if addr, ok := p.via["udp"]; ok {
			host, port, _ := net.SplitHostPort(addr)
			n, _ := strconv.Atoi(port)
			return sip.Addr{IP: net.ParseIP(host), Port: n}
		}
	}
	for _, addr := range p.via {
		host, _, _ := net.SplitHostPort(addr)
		return sip.Addr{IP: net.ParseIP(host)}
	}
	return sip.Addr{}
}

// flowAlive reports whether a flow of this node can still carry a request
// (RFC 5626 §5.3): a connection-oriented flow must still be open; a UDP
// flow is a NAT binding this node cannot see, taken as alive.
func (p *Proxy) flowAlive(f flow) bool {
	if !sip.IsReliable(f.transport) {
		return true
	}
	_, err := p.tp.GetConnection(f.transport, f.remote)
	return err == nil
}

// send starts the client transaction of one branch.
func (p *Proxy) send(ctx context.Context, in *inbound, t target, recordRoute bool) (*branch, error) {
	if t.out != nil && !p.flowAlive(*t.out) {
		return nil, sipstatus.FlowFailed(fmt.Errorf("%w: %s", ErrFlowGone, t.out))
	}
	out := p.prepare(in, t, recordRoute)
	tx, err := p.txl.Request(ctx, out)
	if err != nil {
		return nil, err
	}
	return &branch{t: t, req: out, tx: tx}, nil
}

// proxy forwards the request to the targets in parallel and returns the
// best response upstream (§16.7). A target that cannot be sent, ends
// without a response, or fails as its failover says, gives way to the next
// of its list. fork says that we did the location lookup: we are the
// authoritative proxy, which tries the other flows of an instance after a
// 430 and never passes a 430 on (RFC 5626 §5.3, §11.5). Once it started
// forwarding it answers itself and returns nil.
func (p *Proxy) proxy(ctx context.Context, in *inbound, targets []target, fork bool) error {
	if in.cancelled != nil {
		select {
		case <-in.cancelled:
			return nil // the UAC cancelled while we looked for targets
		default:
		}
	}
	mc, side, err := p.mediaRequest(ctx, in, targets)
	if err != nil {
		return err
	}
	// The media session of a call lives as long as its INVITE got a 2xx:
	// a CANCEL, a failure of every branch or Timer C frees it.
	ok2xx := false
	if mc != nil && in.req.Method == sip.INVITE && toTag(in.req) == "" {
		defer func() {
			if !ok2xx {
				p.mediaFree(mc, "the INVITE got no 2xx")
			}
		}()
	}
	rr := dialogForming(in.req)
	events := make(chan branchEvent, 16)
	var branches []*branch
	var wg sync.WaitGroup
	defer wg.Wait()
	var lastErr error
	pending := 0
	// The first branch's transaction is read by this loop itself (most
	// requests have no other); further ones, forks and failovers, by pump
	// goroutines. A goroutine between a transaction and this loop was one
	// more hand-off, often a thread woken, for every response.
	var first sip.ClientTransaction // nil once its final response is in
	defer func() {
		if first != nil {
			first.Terminate()
		}
	}()
	// launch starts t, or the first target of its list that can be sent.
	launch := func(t target) bool {
		for {
			b, err := p.send(ctx, in, t, rr)
			if err == nil {
				branches = append(branches, b)
				pending++
				if len(branches) == 1 {
					first = b.tx
					return true
				}
				wg.Add(1)
				go func(i int, tx sip.ClientTransaction) {
					defer wg.Done()
					pump(ctx, i, tx, events)
				}(len(branches)-1, b.tx)
				return true
			}
			lastErr = err
			p.log.Debug("proxy: branch failed to start", "dest", t.dest, "transport", t.transport, "err", err)
			if len(t.next) == 0 {
				return false
			}
			t = t.following()
		}
	}
	if mc != nil && in.req.Method == sip.BYE && mc.inDialog(in.req, side) {
		// Either party ends the call; its media ends now, whatever
		// becomes of the BYE, and before the BYE goes on: the callee's
		// 200 could otherwise reach the caller while it still runs.
		p.mediaFree(mc, "BYE")
	}
	for _, t := range targets {
		launch(t)
	}
	if len(branches) == 0 {
		if !fork && sipstatus.Of(lastErr).Code == 430 {
			return lastErr // we are the edge whose flow is gone
		}
		return sipstatus.TemporarilyUnavailable(fmt.Errorf("proxy: no branch could be sent: %w", lastErr))
	}
	cancelled := in.cancelled // nil (never ready) unless an INVITE
	answered := false         // a 2xx or 6xx went upstream, or the UAC cancelled
	var best *sip.Response
	cancelAll := func() {
		for _, b := range branches {
			if !b.final {
				p.cancelBranch(ctx, b)
			}
		}
	}
	for pending > 0 {
		var firstResponses <-chan *sip.Response
		var firstDone <-chan struct{}
		if first != nil {
			firstResponses, firstDone = first.Responses(), first.Done()
		}
		var ev branchEvent
		select {
		case ev = <-events:
		case res := <-firstResponses:
			ev = branchEvent{i: 0, res: res}
			if res.StatusCode >= 200 {
				first.Terminate()
				first = nil
			}
		case <-firstDone:
			ev = branchEvent{i: 0, err: txEnded(first)}
			first = nil
		case <-cancelled:
			cancelled = nil
			if !answered {
				answered = true // the transaction layer answered 487
				cancelAll()
			}
			continue
		case <-ctx.Done():
			cancelAll()
			if !answered {
				in.tx.Respond(sipstatus.NewResponse(in.req, 408, "Request Timeout"))
			}
			return nil
		}
		b := branches[ev.i]
		if ev.err != nil {
			b.final = true
			pending--
			if !answered && len(b.t.next) > 0 && launch(b.t.following()) {
				continue
			}
			if best == nil {
				// Stand-ins for the branch's answer, made as sipgo makes
				// responses to requests it sent (sipstatus.NewResponse is
				// for requests received).
				best = sip.NewResponseFromRequest(b.req, 408, "Request Timeout", nil)
				if !strings.Contains(ev.err.Error(), "timed out") && !strings.Contains(ev.err.Error(), "Timer") {
					best = sip.NewResponseFromRequest(b.req, 503, "Service Unavailable", nil)
				}
			}
			continue
		}
		res := ev.res
		switch {
		case res.StatusCode < 200:
			if !b.provisional {
				b.provisional = true
				if b.cancel {
					p.cancelBranch(ctx, b)
				}
			}
			if res.StatusCode > 100 && !answered {
				p.relay(in, p.mediaResponse(ctx, mc, side, in.req, res))
			}
		case res.StatusCode < 300:
			b.final = true
			pending--
			ok2xx = true
			// Every 2xx goes upstream (§16.7 step 5).
			res = p.mediaResponse(ctx, mc, side, in.req, res)
			if answered {
				p.relay(in, res)
				continue
			}
			answered = true
			p.relayAccepted(in, res)
			cancelAll()
		default:
			b.final = true
			pending--
			if answered {
				continue
			}
			if b.t.fo.on(res.StatusCode) && len(b.t.next) > 0 && launch(b.t.following()) {
				continue
			}
			if fork && res.StatusCode == 430 {
				// No flow of the instance is left (RFC 5626 §11.5:
				// endpoints never see a 430).
				res = sip.NewResponseFromRequest(b.req, 480, sipstatus.ReasonPhrase(480), nil)
			}
			if res.StatusCode >= 600 {
				answered = true
				p.relay(in, res)
				cancelAll()
				continue
			}
			if best == nil || betterFinal(res, best) {
				best = res
			}
		}
	}
	if !answered && best != nil {
		p.relay(in, best)
	}
	return nil
}

// betterFinal chooses between non-2xx finals (§16.7 step 6): the lower
// class wins, 401/407 and 415/420/484 are preferred within class 4xx.
func betterFinal(a, b *sip.Response) bool {
	ca, cb := a.StatusCode/100, b.StatusCode/100
	if ca != cb {
		return ca < cb
	}
	pref := func(c int) bool { return c == 401 || c == 407 || c == 415 || c == 420 || c == 484 }
	return pref(a.StatusCode) && !pref(b.StatusCode)
}

// pump passes a client transaction's responses on until its final one.
func pump(ctx context.Context, i int, tx sip.ClientTransaction, events chan<- branchEvent) {
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			select {
			case events <- branchEvent{i: i, res: res}:
			case <-ctx.Done():
				return
			}
			if res.StatusCode >= 200 {
				return
			}
		case <-tx.Done():
			select {
			case events <- branchEvent{i: i, err: txEnded(tx)}:
			case <-ctx.Done():
			}
			return
		case <-ctx.Done():
			return
		}
	}
}

// txEnded is why a client transaction ended without a final response.
func txEnded(tx sip.ClientTransaction) error {
	if err := tx.Err(); err != nil {
		return err
	}
	return errors.New("proxy: transaction ended without a final response")
}

// relay sends a response of a branch upstream without our Via (§16.7 step 9).
// res is changed in place: the client transaction is done with a response
// once it has handed it over (sipgo reads a new one for each
// retransmission), and a copy of each was a tenth of what a call allocated.
func (p *Proxy) relay(in *inbound, res *sip.Response) {
	res.RemoveHeader("Via")
	res.SetTransport(in.req.Transport())
	res.SetDestination(in.respDest)
	p.flowTimer(in, res)
	if err := in.tx.Respond(res); err != nil {
		if res.IsSuccess() && in.req.IsInvite() {
			// A 2xx after the transaction ended (it was cancelled
			// meanwhile) still goes upstream, statelessly.
			if err2 := p.tp.WriteMsg(res); err2 == nil {
				return
			}
		}
		p.log.Debug("proxy: response not relayed", "status", res.StatusCode, "err", err)
	}
}

// cancelBranch sends CANCEL for a pending branch (§16.10), once it got a
// provisional response (§9.1).
func (p *Proxy) cancelBranch(ctx context.Context, b *branch) {
	if b.cancelled || b.final || !b.req.IsInvite() {
		return
	}
	if !b.provisional {
		b.cancel = true
		return
	}
	b.cancelled = true
	c := sip.NewRequest(sip.CANCEL, *b.req.Recipient.Clone())
	c.AppendHeader(b.req.Via().Clone())
	sip.CopyHeaders("Route", b.req, c)
	mf := sip.MaxForwardsHeader(70)
	c.AppendHeader(&mf)
	for _, h := range []sip.Header{b.req.From(), b.req.To(), b.req.CallID()} {
		if h != nil {
			c.AppendHeader(sip.HeaderClone(h))
		}
	}
	c.AppendHeader(&sip.CSeqHeader{SeqNo: b.req.CSeq().SeqNo, MethodName: sip.CANCEL})
	c.SetBody(nil)
	c.SetTransport(b.req.Transport())
	c.SetDestination(b.req.Destination())
	c.Laddr = b.req.Laddr
	cctx, cancel := context.WithTimeout(context.Background(), 32*time.Second)
	tx, err := p.txl.Request(cctx, c)
	if err != nil {
		cancel()
		p.log.Debug("proxy: CANCEL not sent", "err", err)
		return
	}
	go func() {
		defer cancel()
		defer tx.Terminate()
		for {
			select {
			case res := <-tx.Responses():
				if res.StatusCode >= 200 {
					return
				}
			case <-tx.Done():
				return
			case <-cctx.Done():
				return
			}
		}
	}()
}

// forwardAck forwards an ACK for a 2xx statelessly along its route (§16.11;
// an ACK for a non-2xx ends our own server transaction and never gets here).
func (p *Proxy) forwardAck(in *inbound) error {
	if mf := in.req.MaxForwards(); mf != nil && mf.Val() == 0 {
		return ErrTooManyHops
	}
	t, routed, err := p.routeTarget(in)
	if err != nil {
		return err
	}
	if !routed {
		ruri := in.req.Recipient
		if p.isOwn(ruri) || strings.EqualFold(ruri.Host, p.cfg.Domain) {
			return fmt.Errorf("proxy: ACK for %s has nowhere to go", ruri.String())
		}
		if t, err = p.uriTarget(ruri, nil, ruri); err != nil {
			return err
		}
	}
	p.mediaAck(in)
	// No transaction holds an ACK for a 2xx: it is rewritten in place, not
	// copied (a copy was a tenth of what a call allocated).
	return p.tp.WriteMsg(p.rewrite(in.req, in, t, false))
}

// strayResponse forwards a response no client transaction matches to the
// next Via when it is a 2xx to an INVITE: a retransmission the UAS sends
// until it gets the ACK (RFC 6026 §8.4, §16.7 step 5). Other stray
// responses are dropped: they are late provisional responses that the
// transaction layer handed over after the final one, and passing them on
// would reach the UAC after its final response.
func (p *Proxy) strayResponse(res *sip.Response) {
	if !res.IsSuccess() || res.CSeq() == nil || res.CSeq().MethodName != sip.INVITE {
		return
	}
	v := res.Via()
	if v == nil || !p.self[v.Host] || !p.ports[v.Port] {
		return
	}
	out := p.mediaStray(res.Clone())
	out.RemoveHeader("Via")
	next := out.Via()
	if next == nil {
		return
	}
	host, port := viaDest(next)
	out.SetTransport(next.Transport)
	out.SetDestination(net.JoinHostPort(host, strconv.Itoa(port)))
	if err := p.tp.WriteMsg(out); err != nil {
		p.log.Debug("proxy: stray response not forwarded", "status", res.StatusCode, "err", err)
	}
}

// viaDest is where a response goes on to, by the Via it is sent along
// (RFC 3261 §18.2.2, RFC 3581 §4): received and rport when there,
// else the sent-by, with the transport's default port.
func viaDest(v *sip.ViaHeader) (host string, port int) {
	host, port = v.Host, v.Port
	if r, ok := v.Params.Get("received"); ok && r != "" {
		host = r
	}
	if r, ok := v.Params.Get("rport"); ok && r != "" {
		port, _ = strconv.Atoi(r)
	}
	if port == 0 {
		port = int(sip.DefaultPort(v.Transport))
	}
	return host, port
}
