package proxy

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Responder sends the final response of a server transaction;
// sip.ServerTransaction is one.
type Responder interface {
	Respond(res *sip.Response) error
}

// Presence is the presence agent as the edge sees it (roles/presence,
// adapted by the node: roles do not import each other).
type Presence interface {
	// Handles reports whether req is for the presence agent (a PUBLISH,
	// a SUBSCRIBE for the presence event).
	Handles(req *sip.Request) bool
	// Owner returns the UDP "host:port" of the node owning the
	// presentity of req on the presence ring, and whether that is this
	// node with a running agent.
	Owner(req *sip.Request) (addr string, local bool, err error)
	// ServeSIP processes req on the owner; it answers through tx, or
	// returns an error and has answered nothing.
	ServeSIP(ctx context.Context, req *sip.Request, tx Responder) error
}

// isPresence reports whether the edge hands req to the presence agent:
// no Route left, Request-URI in our domain with a user part.
func (p *Proxy) isPresence(req *sip.Request) bool {
	if p.cfg.Presence == nil || req.Route() != nil {
		return false
	}
	ruri := req.Recipient
	return ruri.User != "" && strings.EqualFold(ruri.Host, p.cfg.Domain) && p.cfg.Presence.Handles(req)
}

// presence serves a PUBLISH or SUBSCRIBE here when this node owns the
// presentity, or forwards it to the owner (record-routing a new
// SUBSCRIBE with the flow token, so that NOTIFYs come back through us).
func (p *Proxy) presence(ctx context.Context, in *inbound) error {
	req := in.req
	inDialog := false
	if to := req.To(); to != nil {
		inDialog = to.Params.Has("tag")
	}
	if !inDialog {
		if err := p.authorize(ctx, in); err != nil {
			return err
		}
	}
	addr, local, err := p.cfg.Presence.Owner(req)
	if err != nil {
		return sipstatus.ServiceUnavailable(5*time.Second, fmt.Errorf("proxy: no presence agent: %w", err))
	}
	if local {
		if !in.peer && dialogForming(req) {
			// Our own entry in the dialog's route set, as when forwarding.
			req.PrependHeader(&sip.RecordRouteHeader{Address: p.ownURI(in.flow.transport, &in.flow)})
		}
		if err := p.cfg.Presence.ServeSIP(ctx, req, in.tx); err != nil {
			if res := sipstatus.Response(req, err); res != nil {
				return in.tx.Respond(res)
			}
		}
		return nil
	}
	if in.peer {
		// Forwarded by another node whose view of the ring differs from
		// ours: do not bounce it around.
		return sipstatus.ServiceUnavailable(2*time.Second, fmt.Errorf("proxy: presence owner of %s is %s, not this node", req.Recipient.String(), addr))
	}
	if req.Method == sip.SUBSCRIBE {
		if id := callID(req); id != "" {
			done := make(chan struct{})
			if _, dup := p.subs.LoadOrStore(id, done); !dup {
				defer func() { p.subs.Delete(id); close(done) }()
			}
		}
	}
	return p.proxy(ctx, in, []target{{ruri: req.Recipient, transport: "UDP", dest: addr}}, false)
}

// awaitSubscribe holds a NOTIFY of a dialog whose SUBSCRIBE this edge
// forwarded (initial, refresh or unsubscribe) until
// the SUBSCRIBE's final response is relayed (at most a second), so that
// the watcher gets the 200 before the immediate NOTIFY: the owner sends
// them in that order, but they cross this node on different paths.
func (p *Proxy) awaitSubscribe(ctx context.Context, req *sip.Request) {
	if req.Method != sip.NOTIFY {
		return
	}
	v, ok := p.subs.Load(callID(req))
	if !ok {
		return
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case <-v.(chan struct{}):
	case <-t.C:
	case <-ctx.Done():
	}
}

// Send sends a request of this node's own (a NOTIFY of the presence
// agent) within its dialog and returns the final response: to the flow
// named by a Route entry of ours, else to the first Route or the
// Request-URI, from this node's listening address. It implements the
// presence agent's Sender.
func (p *Proxy) Send(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	out := req.Clone()
	var t target
	via, _, err := p.popOwnRoutes(out, flow{})
	if err != nil {
		return nil, err
	}
	switch {
	case via != nil:
		if !p.flowAlive(*via) {
			return nil, sipstatus.FlowFailed(fmt.Errorf("%w: %s", ErrFlowGone, via))
		}
		t = p.flowTarget(out.Recipient, nil, *via)
	case out.Route() != nil:
		if t, err = p.uriTarget(out.Recipient, nil, out.Route().Address); err != nil {
			return nil, err
		}
	default:
		if t, err = p.uriTarget(out.Recipient, nil, out.Recipient); err != nil {
			return nil, err
		}
	}
	tr := strings.ToLower(t.transport)
	v := &sip.ViaHeader{ProtocolName: "SIP", ProtocolVersion: "2.0", Transport: t.transport, Params: sip.HeaderParams{}}
	addr, ok := p.via[tr]
	if !ok {
		addr = p.via["udp"]
	}
	host, port, _ := net.SplitHostPort(addr)
	v.Host = host
	v.Port, _ = strconv.Atoi(port)
	v.Params.Add("branch", sip.GenerateBranch())
	v.Params.Add("rport", "")
	out.PrependHeader(v)
	if out.MaxForwards() == nil {
		m := sip.MaxForwardsHeader(70)
		out.AppendHeader(&m)
	}
	out.SetTransport(t.transport)
	out.SetDestination(t.dest)
	out.Laddr = p.laddr(tr)
	tx, err := p.txl.Request(ctx, out)
	if err != nil {
		return nil, fmt.Errorf("proxy: sending %s: %w", out.Method, err)
	}
	defer tx.Terminate()
	for {
		select {
		case res := <-tx.Responses():
			if res.StatusCode >= 200 {
				return res, nil
			}
		case <-tx.Done():
			if err := tx.Err(); err != nil {
				return nil, fmt.Errorf("proxy: %s: %w", out.Method, err)
			}
			return nil, fmt.Errorf("proxy: %s: transaction ended without a final response", out.Method)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}
