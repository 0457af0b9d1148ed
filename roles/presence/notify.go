package presence

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
)

// outgoing is a NOTIFY whose CSeq has been claimed in the store.
type outgoing struct {
	key, id string
	req     *sip.Request
	final   bool // terminates the subscription
}

// dialogQueue is a dialog with a NOTIFY in flight: at most one is (RFC
// 6665 §4.2.2); a change meanwhile sets pending (one NOTIFY with the
// state of then is sent when the one in flight completes) and a
// termination is kept in final.
type dialogQueue struct {
	pending bool
	final   *outgoing
}

func queueKey(key, id string) string { return key + "\x00" + id }

// claimLocked prepares a NOTIFY for each of subs (terminating those named
// in term, id -> reason) from the state in v, and writes the subscriptions
// with their new CSeq, together with extra, in one Put. It returns the
// NOTIFYs to send now; those for dialogs with a NOTIFY in flight are
// queued, and their records written only when changed says subs were
// modified (a refresh). The caller holds the key's lock and dispatches the
// result after releasing it.
func (a *Agent) claimLocked(ctx context.Context, key string, v *view, subs []*Subscription, changed bool, term map[string]string, extra ...Record) ([]*outgoing, error) {
	recs := extra
	var outs []*outgoing
	var marked []string
	if len(subs) > 0 {
		body := Compose("sip:"+key, v.pidfs())
		a.qmu.Lock()
		for _, s := range subs {
			id := s.DialogID()
			qk := queueKey(key, id)
			reason := term[id]
			q, busy := a.queues[qk]
			if busy && reason == "" {
				// Store what changed in the subscription (a refresh);
				// the NOTIFY follows the one in flight.
				q.pending = true
				if changed {
					recs = append(recs, record(id, s, s.Expires, a.grace, false))
				}
				continue
			}
			out, rec := a.claimOne(key, body, s, reason)
			recs = append(recs, rec)
			if busy {
				q.final = out
				continue
			}
			a.queues[qk] = &dialogQueue{}
			marked = append(marked, qk)
			outs = append(outs, out)
		}
		a.qmu.Unlock()
	}
	if len(recs) == 0 {
		return nil, nil
	}
	if err := a.store.Put(ctx, key, recs...); err != nil {
		a.qmu.Lock()
		for _, qk := range marked {
			delete(a.queues, qk)
		}
		a.qmu.Unlock()
		return nil, storeError(key, err)
	}
	return outs, nil
}

// claimOne takes the next CSeq of s and builds its NOTIFY with body (the
// composed state), terminating the subscription when reason is set. It
// returns the NOTIFY and the subscription's record to store.
func (a *Agent) claimOne(key string, body []byte, s *Subscription, reason string) (*outgoing, Record) {
	s.LocalCSeq++
	state := ""
	withBody := s.State == StateActive
	if reason != "" {
		state = StateTerminated + ";reason=" + reason
		withBody = withBody && reason == ReasonTimeout
		s.State = StateTerminated
	} else {
		left := s.Expires.Sub(a.now())
		state = s.State + ";expires=" + strconv.FormatInt(int64((left+time.Second-1)/time.Second), 10)
	}
	if !withBody {
		body = nil
	}
	out := &outgoing{key: key, id: s.DialogID(), req: buildNotify(s, state, body), final: reason != ""}
	return out, record(s.DialogID(), s, s.Expires, a.grace, reason != "")
}

// buildNotify builds a NOTIFY within the subscription's dialog (RFC 3261
// §12.2.1.1; RFC 6665 §4.2.2 and §8.2.3).
func buildNotify(s *Subscription, state string, body []byte) *sip.Request {
	var target sip.Uri
	if err := sip.ParseUri(s.RemoteTarget, &target); err != nil {
		target = sip.Uri{Scheme: "sip", Host: "invalid"}
	}
	var routes []sip.Uri
	for _, r := range s.RouteSet {
		var u sip.Uri
		var p sip.HeaderParams
		if _, err := sip.ParseAddressValue(r, &u, &p); err == nil {
			routes = append(routes, u)
		}
	}
	ruri := target
	if len(routes) > 0 && !routes[0].UriParams.Has("lr") {
		// Strict routing: the first route is the Request-URI and the
		// remote target the last Route.
		ruri, routes = routes[0], append(routes[1:], target)
	}
	req := sip.NewRequest(sip.NOTIFY, ruri)
	for _, u := range routes {
		req.AppendHeader(&sip.RouteHeader{Address: u})
	}
	from := &sip.FromHeader{Params: sip.NewParams()}
	sip.ParseUri(s.LocalURI, &from.Address)
	from.Params.Add("tag", s.LocalTag)
	to := &sip.ToHeader{Params: sip.NewParams()}
	sip.ParseUri(s.RemoteURI, &to.Address)
	to.Params.Add("tag", s.RemoteTag)
	callID := sip.CallIDHeader(s.CallID)
	mf := sip.MaxForwardsHeader(70)
	req.AppendHeader(from)
	req.AppendHeader(to)
	req.AppendHeader(&callID)
	req.AppendHeader(&sip.CSeqHeader{SeqNo: s.LocalCSeq, MethodName: sip.NOTIFY})
	req.AppendHeader(&mf)
	contact := &sip.ContactHeader{}
	if sip.ParseUri(s.LocalContact, &contact.Address) == nil {
		req.AppendHeader(contact)
	}
	ev := EventPresence
	if s.EventID != "" {
		ev += ";id=" + s.EventID
	}
	req.AppendHeader(sip.NewHeader("Event", ev))
	req.AppendHeader(sip.NewHeader("Subscription-State", state))
	if len(body) > 0 {
		ct := sip.ContentTypeHeader(ContentTypePIDF)
		req.AppendHeader(&ct)
	}
	req.SetBody(body)
	return req
}

// dispatch sends NOTIFYs, each in its own goroutine that then goes on with
// what its dialog queued meanwhile.
func (a *Agent) dispatch(outs []*outgoing) {
	for _, o := range outs {
		a.goAgent(func() { a.drain(o) })
	}
}

func (a *Agent) drain(out *outgoing) {
	qk := queueKey(out.key, out.id)
	for {
		ok := a.send(out)
		if !ok && !out.final {
			a.drop(out.key, out.id)
		}
		a.qmu.Lock()
		q := a.queues[qk]
		var next *outgoing
		pending := false
		if q != nil {
			next, pending = q.final, q.pending
			q.final, q.pending = nil, false
		}
		live := ok && !out.final && a.ctx.Err() == nil
		if next != nil && live {
			a.qmu.Unlock()
			out = next
			continue
		}
		delete(a.queues, qk)
		a.qmu.Unlock()
		if pending && live {
			a.restate(out.key, out.id)
		}
		return
	}
}

// restate has dialog id of key sent the presentity's current state: it
// changed while the dialog's previous NOTIFY was in flight. Dialogs of one
// key that finish about together are handled together, with one read and
// one write of the store.
func (a *Agent) restate(key, id string) {
	a.qmu.Lock()
	if a.stale == nil {
		a.stale = map[string]map[string]bool{}
	}
	ids, scheduled := a.stale[key]
	if !scheduled {
		ids = map[string]bool{}
		a.stale[key] = ids
	}
	ids[id] = true
	a.qmu.Unlock()
	if scheduled {
		return
	}
	a.goAgent(func() {
		ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
		defer cancel()
		unlock := a.keys.lock(key)
		a.qmu.Lock()
		ids := a.stale[key]
		delete(a.stale, key)
		a.qmu.Unlock()
		recs, err := a.store.Get(ctx, key)
		if err != nil {
			unlock()
			a.log.Warn("presence: NOTIFY not sent: store unreachable", "presentity", key, "err", err)
			return
		}
		v := decode(recs, a.now())
		var subs []*Subscription
		for _, s := range v.subs {
			if ids[s.DialogID()] {
				subs = append(subs, s)
			}
		}
		outs, err := a.claimLocked(ctx, key, v, subs, false, nil)
		unlock()
		if err != nil {
			a.log.Warn("presence: NOTIFY not sent", "presentity", key, "err", err)
			return
		}
		a.dispatch(outs)
	})
}

// send sends one NOTIFY and reports whether the subscription lives on: a
// 2xx, or a failure response with Retry-After (RFC 6665 §4.2.2).
func (a *Agent) send(out *outgoing) bool {
	ctx, cancel := context.WithTimeout(a.ctx, a.notifyTimeout)
	defer cancel()
	res, err := a.sender.Send(ctx, out.req)
	log := a.log.With("presentity", out.key, "dialog", out.id, "cseq", out.req.CSeq().SeqNo)
	switch {
	case err != nil && a.ctx.Err() != nil:
		// Shutting down: not the watcher's failure. The subscription
		// stays for the next owner.
		log.Debug("presence: NOTIFY abandoned: agent closing", "err", err)
		return true
	case err != nil:
		log.Info("presence: NOTIFY failed; subscription removed", "err", err)
		return false
	case res.StatusCode >= 200 && res.StatusCode < 300:
		log.Debug("presence: NOTIFY delivered", "status", res.StatusCode)
		return true
	case sipmsg.Header(res, "Retry-After") != nil:
		log.Info("presence: NOTIFY refused for now", "status", res.StatusCode)
		return true
	default:
		log.Info("presence: NOTIFY refused; subscription removed", "status", res.StatusCode)
		return false
	}
}

// drop removes a subscription whose NOTIFY failed (a tombstone at the
// same CSeq, which wins over the live version).
func (a *Agent) drop(key, id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	unlock := a.keys.lock(key)
	defer unlock()
	recs, err := a.store.Get(ctx, key)
	if err != nil {
		a.log.Warn("presence: failed subscription not removed; it expires on its own", "presentity", key, "dialog", id, "err", err)
		return
	}
	s := decode(recs, a.now()).sub(id)
	if s == nil {
		return
	}
	s.State = StateTerminated
	if err := a.store.Put(ctx, key, record(id, s, s.Expires, a.grace, true)); err != nil {
		a.log.Warn("presence: failed subscription not removed; it expires on its own", "presentity", key, "dialog", id, "err", err)
	}
}

// Remove ends the presentity: its publications are deleted and its
// watchers get a NOTIFY "terminated;reason=noresource" (RFC 6665
// §4.1.3), e.g. when the subscriber is deleted from the users file.
func (a *Agent) Remove(ctx context.Context, presentity string) error {
	unlock := a.keys.lock(presentity)
	recs, err := a.store.Get(ctx, presentity)
	if err != nil {
		unlock()
		return fmt.Errorf("presence: remove %s: %w", presentity, err)
	}
	v := decode(recs, a.now())
	var put []Record
	for _, p := range append(v.pubs, v.expiredPubs...) {
		put = append(put, record(p.ETag, p, p.Expires, a.grace, true))
	}
	v.pubs = nil
	term := map[string]string{}
	for _, s := range v.subs {
		term[s.DialogID()] = ReasonNoResource
	}
	outs, err := a.claimLocked(ctx, presentity, v, v.subs, false, term, put...)
	unlock()
	if err != nil {
		return fmt.Errorf("presence: remove %s: %w", presentity, err)
	}
	a.dispatch(outs)
	return nil
}
