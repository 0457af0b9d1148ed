package presence

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"mime"
	"strconv"
	"strings"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/sipmsg"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// Publish processes a PUBLISH (RFC 3903 §6) and returns the response to
// send; an error maps to the response through roles/sipstatus. Watchers of
// the presentity are notified when the composed state changed (initial,
// modify, remove; not on a refresh).
func (a *Agent) Publish(ctx context.Context, req *sip.Request) (*sip.Response, error) {
	// the event package.
	if ev, _ := eventOf(req); ev != EventPresence {
		return nil, badEvent(fmt.Errorf("%w: PUBLISH for event %q", ErrBadEvent, ev))
	}
	key, err := presentityOf(req)
	if err != nil {
		return nil, err
	}
	// authorization. The edge authenticates the From of
	// subscribers of the domain; one may publish only for oneself.
	if from := req.From(); from == nil || Key(from.Address) != key {
		return nil, sipstatus.Forbidden(fmt.Errorf("%w: PUBLISH for %s from another AOR", ErrForbidden, key))
	}
	// the body.
	body := req.Body()
	if len(body) > 0 {
		if err := checkPIDF(req, body); err != nil {
			return nil, err
		}
	}
	// the expiry.
	exp, err := expiresOf(req, a.pubDef)
	if err != nil {
		return nil, err
	}
	if exp, err = grant(exp, a.pubMin, a.pubMax); err != nil {
		return nil, err
	}
	ifMatch := ""
	if h := sipmsg.Header(req, "SIP-If-Match"); h != nil {
		ifMatch = strings.TrimSpace(h.Value())
	}
	if ifMatch == "" && len(body) == 0 {
		return nil, badRequest("Missing Body", ErrNoBody)
	}

	unlock := a.keys.lock(key)
	recs, err := a.store.Get(ctx, key)
	if err != nil {
		unlock()
		return nil, storeError(key, err)
	}
	now := a.now()
	v := decode(recs, now)
	// the entity-tag.
	var old *Publication
	if ifMatch != "" {
		if old = v.pub(ifMatch); old == nil {
			unlock()
			return nil, conditionFailed(fmt.Errorf("%w: %q for %s", ErrUnknownETag, ifMatch, key))
		}
	}
	var (
		put     []Record
		changed bool
		cur     *Publication
	)
	if old != nil {
		put = append(put, record(old.ETag, old, old.Expires, a.grace, true))
		v.dropPub(old.ETag)
		changed = exp == 0 || len(body) > 0
	}
	if exp > 0 {
		cur = &Publication{Kind: KindPublication, ETag: newETag(), Expires: now.Add(exp), Published: now, Modified: now, PIDF: string(body)}
		if old != nil {
			cur.Published = old.Published
			if len(body) == 0 {
				cur.PIDF, cur.Modified = old.PIDF, old.Modified
			}
		}
		changed = changed || old == nil
		put = append(put, record(cur.ETag, cur, cur.Expires, a.grace, false))
		v.pubs = append(v.pubs, cur)
		sortPubs(v.pubs)
	}
	var notify []*Subscription
	if changed {
		notify = v.subs
	}
	outs, err := a.claimLocked(ctx, key, v, notify, false, nil, put...)
	unlock()
	if err != nil {
		return nil, err
	}
	a.dispatch(outs)

	res := sipstatus.NewResponse(req, 200, "OK")
	if cur != nil {
		res.AppendHeader(sip.NewHeader("SIP-ETag", cur.ETag))
	}
	res.AppendHeader(sip.NewHeader("Expires", strconv.FormatInt(int64(exp/time.Second), 10)))
	a.log.Debug("presence: published", "presentity", key, "if_match", ifMatch, "expires", exp, "changed", changed, "watchers", len(v.subs))
	return res, nil
}

// checkPIDF accepts application/pidf+xml bodies that parse (415 for
// another media type, 400 for a broken document).
func checkPIDF(req *sip.Request, body []byte) error {
	ct := ""
	if h := req.ContentType(); h != nil {
		ct = h.Value()
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !strings.EqualFold(mt, ContentTypePIDF) {
		return unsupportedMedia(fmt.Errorf("%w: %q", ErrUnsupportedMedia, ct))
	}
	if _, err := parsePIDF(body); err != nil {
		return badRequest("Bad PIDF Document", err)
	}
	return nil
}

func (v *view) dropPub(etag string) {
	for i, p := range v.pubs {
		if p.ETag == etag {
			v.pubs = append(v.pubs[:i], v.pubs[i+1:]...)
			return
		}
	}
}

// newETag returns a fresh entity-tag (RFC 3903 §6: unique across all
// publications of the ESC): 80 random bits.
func newETag() string {
	b := make([]byte, 10)
	rand.Read(b)
	return strings.ToLower(base32.StdEncoding.EncodeToString(b))
}

// storeError is 503 with Retry-After: the presence store could not be
// read or written.
func storeError(key string, err error) error {
	return sipstatus.ServiceUnavailable(5*time.Second, fmt.Errorf("presence: store, key %s: %w", key, err))
}
