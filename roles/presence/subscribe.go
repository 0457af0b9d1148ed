package presence

import (
	"context"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Reasons of a terminated subscription (RFC 6665 §4.1.3).
const (
	ReasonTimeout    = "timeout"
	ReasonNoResource = "noresource"
	ReasonRejected   = "rejected"
	ReasonDeactivate = "deactivated"
)

// Subscribe processes a SUBSCRIBE for the presence event (RFC 6665 §4.2.1,
// RFC 3856 §6): a new subscription, a refresh, an unsubscribe (Expires: 0)
// or a fetch (Expires: 0 without a dialog). It sends the final response
// through tx and then the NOTIFY; when it returns an error it has sent
// nothing.
func (a *Agent) Subscribe(ctx context.Context, req *sip.Request, tx Responder) error {
	ev, evID := eventOf(req)
	if ev != EventPresence {
		return badEvent(fmt.Errorf("%w: SUBSCRIBE for event %q", ErrBadEvent, ev))
	}
	key, err := presentityOf(req)
	if err != nil {
		return err
	}
	if err := checkAccept(req); err != nil {
		return err
	}
	exp, err := expiresOf(req, a.subDef)
	if err != nil {
		return err
	}
	if exp, err = grant(exp, a.subMin, a.subMax); err != nil {
		return err
	}
	from, to, callID, cseq := req.From(), req.To(), req.CallID(), req.CSeq()
	if from == nil || to == nil || callID == nil || cseq == nil {
		return badRequest("Missing Header", fmt.Errorf("%w: SUBSCRIBE without From, To, Call-ID or CSeq", ErrBadRequest))
	}
	remoteTag, _ := from.Params.Get("tag")
	if remoteTag == "" {
		return badRequest("Missing From Tag", fmt.Errorf("%w: SUBSCRIBE without a From tag", ErrBadRequest))
	}
	if localTag, ok := to.Params.Get("tag"); ok && localTag != "" {
		return a.refresh(ctx, req, tx, key, dialogID(callID.Value(), localTag, remoteTag), exp)
	}
	contact := req.Contact()
	if contact == nil {
		return badRequest("Missing Contact", fmt.Errorf("%w: SUBSCRIBE without Contact", ErrBadRequest))
	}
	watcher := Key(from.Address)
	dec, err := a.auth.Authorize(ctx, watcher, key)
	if err != nil {
		return err
	}
	if dec == Deny {
		return sipstatus.Forbidden(fmt.Errorf("%w: %s may not watch %s", ErrForbidden, watcher, key))
	}
	now := a.now()
	s := &Subscription{
		Kind: KindSubscription, Presentity: key, Watcher: watcher,
		CallID: callID.Value(), LocalTag: sip.GenerateTagN(16), RemoteTag: remoteTag,
		LocalURI: to.Address.String(), RemoteURI: from.Address.String(),
		RemoteTarget: contact.Address.String(), LocalContact: a.contact(key), EventID: evID,
		RemoteCSeq: cseq.SeqNo, Expires: now.Add(exp), State: StateActive,
	}
	if dec == Pending {
		s.State = StatePending
	}
	for h := range sipmsg.Headers(req, "Record-Route") {
		s.RouteSet = append(s.RouteSet, h.Value())
	}

	unlock := a.keys.lock(key)
	recs, err := a.store.Get(ctx, key)
	if err != nil {
		unlock()
		return storeError(key, err)
	}
	v := decode(recs, now)
	var outs []*outgoing
	if exp == 0 {
		// A fetch: one NOTIFY with the state, nothing stored (RFC 6665 §4.4.3).
		out, _ := a.claimOne(key, Compose("sip:"+key, v.pidfs()), s, ReasonTimeout)
		outs = []*outgoing{out}
	} else if outs, err = a.claimLocked(ctx, key, v, []*Subscription{s}, true, nil); err != nil {
		unlock()
		return err
	}
	unlock()
	err = tx.Respond(a.subscribeResponse(req, s, exp))
	a.dispatch(outs)
	a.log.Debug("presence: subscribed", "presentity", key, "watcher", watcher, "state", s.State, "expires", exp, "dialog", s.DialogID())
	return err
}

// refresh handles a SUBSCRIBE within an existing dialog (RFC 6665 §4.2.1.4):
// refresh or, with Expires: 0, unsubscribe.
func (a *Agent) refresh(ctx context.Context, req *sip.Request, tx Responder, key, id string, exp time.Duration) error {
	unlock := a.keys.lock(key)
	locked := true
	defer func() {
		if locked {
			unlock()
		}
	}()
	recs, err := a.store.Get(ctx, key)
	if err != nil {
		return storeError(key, err)
	}
	now := a.now()
	v := decode(recs, now)
	s := v.sub(id)
	if s == nil {
		return sipstatus.New(481, "", fmt.Errorf("%w: dialog %s of %s", ErrNoSubscription, id, key))
	}
	seq := req.CSeq().SeqNo
	if seq <= s.RemoteCSeq {
		// RFC 3261 §12.2.2.
		return sipstatus.ServerInternal(fmt.Errorf("%w: %d after %d", ErrOutOfOrder, seq, s.RemoteCSeq))
	}
	s.RemoteCSeq = seq
	if c := req.Contact(); c != nil {
		s.RemoteTarget = c.Address.String() // target refresh (RFC 3261 §12.2.2)
	}
	reason := ""
	if exp == 0 {
		reason = ReasonTimeout
	} else {
		dec, err := a.auth.Authorize(ctx, s.Watcher, key)
		if err != nil {
			return err
		}
		switch dec {
		case Allow:
			s.State = StateActive
		case Pending:
			s.State = StatePending
		default:
			reason = ReasonRejected
		}
		s.Expires = now.Add(exp)
	}
	var term map[string]string
	if reason != "" {
		term = map[string]string{id: reason}
	}
	outs, err := a.claimLocked(ctx, key, v, []*Subscription{s}, true, term)
	if err != nil {
		return err
	}
	unlock()
	locked = false
	err = tx.Respond(a.subscribeResponse(req, s, exp))
	a.dispatch(outs)
	a.log.Debug("presence: subscription refreshed", "presentity", key, "dialog", id, "expires", exp, "reason", reason)
	return err
}

func (a *Agent) subscribeResponse(req *sip.Request, s *Subscription, exp time.Duration) *sip.Response {
	code, reason := 200, "OK"
	if s.State == StatePending {
		code, reason = 202, "Accepted"
	}
	res := sipstatus.NewResponse(req, code, reason)
	if to := res.To(); to != nil {
		to.Params.Add("tag", s.LocalTag) // replaces the one sipgo made up
	}
	res.AppendHeader(sip.NewHeader("Contact", "<"+s.LocalContact+">"))
	res.AppendHeader(sip.NewHeader("Expires", strconv.FormatInt(int64(exp/time.Second), 10)))
	return res
}

// checkAccept refuses watchers whose Accept excludes PIDF (406; RFC 3856
// §6.5: PIDF is the mandatory format, so no Accept means PIDF).
func checkAccept(req *sip.Request) error {
	if sipmsg.Header(req, "Accept") == nil {
		return nil
	}
	for h := range sipmsg.Headers(req, "Accept") {
		for _, v := range strings.Split(h.Value(), ",") {
			mt, _, err := mime.ParseMediaType(strings.TrimSpace(v))
			if err != nil {
				continue
			}
			if mt == ContentTypePIDF || mt == "application/*" || mt == "*/*" {
				return nil
			}
		}
	}
	return sipstatus.New(406, "", ErrNotAcceptable, sip.NewHeader("Accept", ContentTypePIDF))
}
