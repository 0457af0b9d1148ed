package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/roles/proxy"
	"github.com/sipmesh/sipmesh/roles/relay"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// mediaAnchor is the node's proxy.Media: it picks a call's relay on the
// relay ring by Call-ID, this node's datacenter first, and drives it over
// the overlay RPC (or directly when the relay is this node).
type mediaAnchor struct {
	n    *Node
	mode relay.Mode
	log  *slog.Logger

	mu    sync.Mutex
	calls map[string]*anchoredCall
}

var _ proxy.Media = (*mediaAnchor)(nil)

type anchoredCall struct {
	callerTag string
	relayNode string
	ctrl      relay.Controller
	allocated bool
	since     time.Time
}

// mediaSweep is how often the anchor forgets calls whose relay session the
// relay freed on its own (inactivity) or whose relay left the mesh.
const mediaSweep = 10 * time.Second

// rpcTimeout bounds one relay call of the anchor.
const rpcTimeout = 3 * time.Second

func (n *Node) newMediaAnchor(log *slog.Logger) (*mediaAnchor, error) {
	mode, err := relay.ParseMode(n.cfg.Relay.Mode)
	if err != nil {
		return nil, fmt.Errorf("node: key \"relay.mode\": %w", err)
	}
	return &mediaAnchor{n: n, mode: mode, log: log, calls: map[string]*anchoredCall{}}, nil
}

// candidates are the relay nodes for callID in order of preference: the
// relay ring's order for the key (owner first), this datacenter's first.
func (a *mediaAnchor) candidates(callID string) []string {
	rg := a.n.ov.Ring(certs.RoleRelay)
	all := rg.Replicas(callID, rg.Len())
	dc := a.n.ov.Self().Datacenter
	var mine, others []string
	for _, nd := range all {
		if nd.Datacenter == dc {
			mine = append(mine, nd.Name)
		} else {
			others = append(others, nd.Name)
		}
	}
	return append(mine, others...)
}

func (a *mediaAnchor) controller(node string) relay.Controller {
	if node == a.n.Name() && a.n.relay != nil {
		return a.n.relay
	}
	return relay.NewRemote(a.n.rpcClient, node)
}

// Anchor implements proxy.Media.
func (a *mediaAnchor) Anchor(_ context.Context, call proxy.MediaCall) bool {
	if a.mode == relay.ModeNever {
		return false
	}
	cands := a.candidates(call.CallID)
	if len(cands) == 0 {
		a.log.Debug("media: no relay in the mesh: not relayed", "call_id", call.CallID)
		return false
	}
	if a.mode == relay.ModeNAT && !relay.NeedsRelay(a.mode, a.parties(call)...) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.calls[call.CallID]; !ok {
		a.calls[call.CallID] = &anchoredCall{callerTag: call.CallerTag, relayNode: cands[0], ctrl: a.controller(cands[0]), since: time.Now()}
	}
	return true
}

// parties describes the caller and the callee's contacts for the NAT
// rule. Of a callee only its Contact is known here: a private address in
// it says it is behind NAT (phones put their own address there).
func (a *mediaAnchor) parties(call proxy.MediaCall) []relay.Party {
	caller := relay.Party{Datagram: call.Datagram}
	caller.Source, _ = netip.ParseAddrPort(call.Source)
	if ap, err := netip.ParseAddrPort(call.Contact); err == nil {
		caller.Contact = ap
	} else if ip, err := netip.ParseAddr(call.Contact); err == nil {
		caller.Contact = netip.AddrPortFrom(ip, 0)
	}
	if ms, err := relay.ParseSDP(call.SDP); err == nil {
		for _, m := range ms {
			caller.Media = append(caller.Media, m.RTP.Addr())
		}
	}
	parties := []relay.Party{caller}
	for _, c := range call.Callee {
		var u sip.Uri
		if sip.ParseUri(c, &u) != nil {
			continue
		}
		if ip, err := netip.ParseAddr(u.Host); err == nil {
			parties = append(parties, relay.Party{Media: []netip.Addr{ip}})
		}
	}
	return parties
}

// SDP implements proxy.Media.
func (a *mediaAnchor) SDP(ctx context.Context, callID, senderTag string, body []byte, relatch bool) ([]byte, bool, error) {
	a.mu.Lock()
	c, ok := a.calls[callID]
	a.mu.Unlock()
	if !ok {
		return body, false, nil
	}
	media, err := relay.ParseSDP(body)
	if err != nil {
		return nil, true, sipstatus.New(488, "", fmt.Errorf("media: %w", err))
	}
	fromCaller := senderTag == c.callerTag
	specs := make([]relay.StreamSpec, len(media))
	for i, m := range media {
		if fromCaller {
			specs[i] = relay.StreamSpec{A: m.Peer(), B: relay.Peer{Family: m.Family}}
		} else {
			specs[i] = relay.StreamSpec{A: relay.Peer{Family: m.Family}, B: m.Peer()}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, rpcTimeout)
	defer cancel()
	al, err := a.allocate(ctx, callID, c, specs, relatch)
	if err != nil {
		return nil, true, err
	}
	eps := al.ForA()
	if fromCaller {
		eps = al.ForB()
	}
	out, err := relay.RewriteSDP(body, eps)
	if err != nil {
		return nil, true, sipstatus.New(488, "", fmt.Errorf("media: %w", err))
	}
	return out, true, nil
}

// allocate creates the call's session on its first SDP and updates it
// after. A relay that fails (SIGKILLed, or its session gone) is replaced
// by the next candidate with a fresh session: the party whose SDP this is
// is relayed at once, the other once its next SDP passes (the answer to a
// re-INVITE).
func (a *mediaAnchor) allocate(ctx context.Context, callID string, c *anchoredCall, specs []relay.StreamSpec, relatch bool) (relay.Allocation, error) {
	a.mu.Lock()
	ctrl, node, allocated := c.ctrl, c.relayNode, c.allocated
	a.mu.Unlock()
	var err error
	if allocated {
		var al relay.Allocation
		al, err = ctrl.Update(ctx, relay.UpdateRequest{CallID: callID, Streams: specs, Relatch: relatch})
		if err == nil || relay.SIPStatus(err) != 500 && !errors.Is(err, relay.ErrNotFound) {
			return al, relayError(err)
		}
		a.log.Warn("media: relay lost, moving the call to another", "call_id", callID, "relay", node, "err", err)
	}
	for _, cand := range a.candidates(callID) {
		if allocated && cand == node {
			continue
		}
		ctrl := a.controller(cand)
		al, e := ctrl.Allocate(ctx, relay.AllocateRequest{CallID: callID, Streams: specs})
		if e == nil {
			a.mu.Lock()
			c.ctrl, c.relayNode, c.allocated = ctrl, cand, true
			a.mu.Unlock()
			return al, nil
		}
		err = e
		if relay.SIPStatus(e) == 488 {
			break // the SDP, not the relay
		}
		a.log.Warn("media: relay refused the call", "call_id", callID, "relay", cand, "err", e)
	}
	if err == nil {
		err = relay.ErrClosed // no relay left
	}
	return relay.Allocation{}, relayError(err)
}

// relayError maps a relay's refusal to the SIP response (503, 488).
func relayError(err error) error {
	if err == nil {
		return nil
	}
	code := relay.SIPStatus(err)
	if code == 503 {
		return sipstatus.ServiceUnavailable(5*time.Second, fmt.Errorf("media: %w", err))
	}
	return sipstatus.New(code, "", fmt.Errorf("media: %w", err))
}

// End implements proxy.Media.
func (a *mediaAnchor) End(ctx context.Context, callID string) {
	a.mu.Lock()
	c, ok := a.calls[callID]
	delete(a.calls, callID)
	a.mu.Unlock()
	if !ok || !c.allocated {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rpcTimeout)
	defer cancel()
	if _, err := c.ctrl.Free(ctx, callID); err != nil && !errors.Is(err, relay.ErrNotFound) {
		a.log.Warn("media: relay session not freed", "call_id", callID, "relay", c.relayNode, "err", err)
	}
}

// run forgets, every mediaSweep, the calls whose relay session ended
// without the call (the relay's inactivity or setup timeout) or whose
// relay is no longer a member: one Sessions call per relay in use.
func (a *mediaAnchor) run(ctx context.Context) {
	t := time.NewTicker(mediaSweep)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		a.sweep(ctx)
	}
}

func (a *mediaAnchor) sweep(ctx context.Context) {
	byRelay := map[string][]string{}
	ctrls := map[string]relay.Controller{}
	old := time.Now().Add(-mediaSweep)
	a.mu.Lock()
	for id, c := range a.calls {
		if c.allocated && c.since.Before(old) {
			byRelay[c.relayNode] = append(byRelay[c.relayNode], id)
			ctrls[c.relayNode] = c.ctrl
		}
	}
	a.mu.Unlock()
	rg := a.n.ov.Ring(certs.RoleRelay)
	for node, ids := range byRelay {
		live := map[string]bool{}
		if rg.Has(node) {
			sctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			ss, err := ctrls[node].Sessions(sctx)
			cancel()
			if err != nil {
				continue // try again next time
			}
			for _, s := range ss {
				if s.Freed == "" {
					live[s.CallID] = true
				}
			}
		}
		a.mu.Lock()
		for _, id := range ids {
			if c, ok := a.calls[id]; ok && c.relayNode == node && !live[id] {
				delete(a.calls, id)
				a.log.Info("media: relay session ended without the call (inactivity, or the relay left)", "call_id", id, "relay", node)
			}
		}
		a.mu.Unlock()
	}
}
