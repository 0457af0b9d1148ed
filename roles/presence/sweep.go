package presence

import (
	"context"
	"time"
)

func (a *Agent) sweepLoop() {
	t := time.NewTicker(a.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-a.ctx.Done():
			return
		case <-t.C:
			a.sweep()
		}
	}
}

// sweep handles the expiries in the keys this node owns: expired
// publications are deleted and the watchers told the new state; expired
// subscriptions get "terminated;reason=timeout" (RFC 6665 §4.2.2). It
// reads the local copy only, and the store only for the keys that have
// something due. A node that became owner when the previous one died
// finds the records in its replica, as records stay grace past their
// expiry.
func (a *Agent) sweep() {
	now := a.now()
	for _, key := range a.store.Owned() {
		if a.ctx.Err() != nil {
			return
		}
		if a.due(a.store.Local(key), now) {
			a.expire(key)
		}
	}
}

// due reports whether a record's own expiry (the store's minus grace) has
// passed.
func (a *Agent) due(recs []Record, now time.Time) bool {
	for _, r := range recs {
		if !r.Deleted && !r.Expires.IsZero() && !now.Before(r.Expires.Add(-a.grace)) {
			return true
		}
	}
	return false
}

func (a *Agent) expire(key string) {
	ctx, cancel := context.WithTimeout(a.ctx, 10*time.Second)
	defer cancel()
	unlock := a.keys.lock(key)
	recs, err := a.store.Get(ctx, key)
	if err != nil {
		unlock()
		a.log.Warn("presence: expiry not processed: store unreachable", "presentity", key, "err", err)
		return
	}
	v := decode(recs, a.now())
	var put []Record
	for _, p := range v.expiredPubs {
		put = append(put, record(p.ETag, p, p.Expires, a.grace, true))
	}
	var subs []*Subscription
	term := map[string]string{}
	for _, s := range v.expiredSubs {
		if s.State == StateTerminated {
			continue
		}
		subs = append(subs, s)
		term[s.DialogID()] = ReasonTimeout
	}
	if len(v.expiredPubs) > 0 {
		subs = append(subs, v.subs...)
	}
	outs, err := a.claimLocked(ctx, key, v, subs, false, term, put...)
	unlock()
	if err != nil {
		a.log.Warn("presence: expiry not processed", "presentity", key, "err", err)
		return
	}
	a.log.Debug("presence: expired", "presentity", key, "publications", len(v.expiredPubs), "subscriptions", len(term))
	a.dispatch(outs)
}
