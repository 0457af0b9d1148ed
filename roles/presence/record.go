package presence

import (
	"bytes"
	"context"
	"encoding/json"
	"time"
)

// Record is one record of a presentity's key in the store: a publication
// or a subscription.
type Record struct {
	ID      string
	Value   []byte
	Version uint64
	Expires time.Time // when the store forgets it (the value's expiry + grace)
	Deleted bool
}

// Store is what the agent needs of the replicated presence store.
type Store interface {
	// Put merges records into key (see Newer). It may keep the records'
	// values: the agent never changes one after.
	Put(ctx context.Context, key string, recs ...Record) error
	// Get returns key's live records (not deleted, not expired).
	Get(ctx context.Context, key string) ([]Record, error)
	// Owned lists the keys held on this node of which it is the owner.
	Owned() []string
	// Local returns the live records of key held on this node, without
	// asking other nodes.
	Local(key string) []Record
}

// Kinds of record.
const (
	KindPublication  = "publication"
	KindSubscription = "subscription"
)

// Publication is the value of a publication record (RFC 3903).
type Publication struct {
	Kind    string    `json:"kind"`
	ETag    string    `json:"etag"`
	Expires time.Time `json:"expires_at"`
	// Published is when the publication was first created; composition
	// orders publications by it.
	Published time.Time `json:"published"`
	Modified  time.Time `json:"modified"`
	PIDF      string    `json:"pidf"`
}

// Subscription states (RFC 6665 §8.2.3).
const (
	StateActive     = "active"
	StatePending    = "pending"
	StateTerminated = "terminated"
)

// Subscription is the value of a subscription record: the dialog state of
// the notifier side (RFC 3261 §12.1.1, RFC 6665 §4.2).
type Subscription struct {
	Kind       string `json:"kind"`
	Presentity string `json:"presentity"`
	Watcher    string `json:"watcher"` // the subscriber's AOR (From URI)
	CallID     string `json:"call_id"`
	LocalTag   string `json:"local_tag"`
	RemoteTag  string `json:"remote_tag"`
	LocalURI   string `json:"local_uri"`  // To URI of the SUBSCRIBE
	RemoteURI  string `json:"remote_uri"` // From URI of the SUBSCRIBE
	// RemoteTarget is the watcher's Contact URI.
	RemoteTarget string `json:"remote_target"`
	// RouteSet are the Record-Route URIs of the SUBSCRIBE, in order
	// (name-addr form).
	RouteSet     []string  `json:"route_set,omitempty"`
	LocalContact string    `json:"local_contact"`
	EventID      string    `json:"event_id,omitempty"`
	LocalCSeq    uint32    `json:"local_cseq"`  // last CSeq sent in a NOTIFY
	RemoteCSeq   uint32    `json:"remote_cseq"` // last CSeq received
	Expires      time.Time `json:"expires_at"`
	State        string    `json:"state"`
}

// DialogID is the subscription's record id.
func (s *Subscription) DialogID() string { return dialogID(s.CallID, s.LocalTag, s.RemoteTag) }

func dialogID(callID, localTag, remoteTag string) string {
	return callID + ";" + localTag + ";" + remoteTag
}

// Newer is the merge rule of the presence store: it reports whether a
// should replace b (two versions of one record). Versions of a
// subscription are ordered by their local CSeq, then a tombstone wins;
// this keeps a store from going back to a CSeq already used when two nodes
// write the same dialog. Anything else: the higher store Version.
//
// The node sets it as the presence store's Merger:
// store.MergerFunc(func(a, b store.Record) bool { return presence.Newer(conv(a), conv(b)) }).
func Newer(a, b Record) bool {
	ca, oka := cseqOf(a.Value)
	cb, okb := cseqOf(b.Value)
	if oka && okb {
		if ca != cb {
			return ca > cb
		}
		if a.Deleted != b.Deleted {
			return a.Deleted
		}
	}
	return a.Version > b.Version
}

// subscriptionPrefix starts every subscription value (json.Marshal keeps
// field order).
var subscriptionPrefix = []byte(`{"kind":"subscription"`)

// cseqOf returns the local CSeq of a subscription value.
func cseqOf(v []byte) (uint32, bool) {
	if !bytes.HasPrefix(v, subscriptionPrefix) {
		return 0, false // not a subscription: skip decoding (hot in merges)
	}
	var x struct {
		Kind string `json:"kind"`
		CSeq uint32 `json:"local_cseq"`
	}
	if json.Unmarshal(v, &x) != nil || x.Kind != KindSubscription {
		return 0, false
	}
	return x.CSeq, true
}

// view is a presentity's records, decoded, at a time.
type view struct {
	pubs []*Publication  // live, oldest first
	subs []*Subscription // live (value not expired)
	// expiredPubs and expiredSubs are past their value expiry but still
	// in the store (grace).
	expiredPubs []*Publication
	expiredSubs []*Subscription
}

func decode(recs []Record, now time.Time) *view {
	v := &view{}
	for _, r := range recs {
		if r.Deleted {
			continue
		}
		var k struct {
			Kind string `json:"kind"`
		}
		if json.Unmarshal(r.Value, &k) != nil {
			continue
		}
		switch k.Kind {
		case KindPublication:
			p := new(Publication)
			if json.Unmarshal(r.Value, p) != nil {
				continue
			}
			if now.Before(p.Expires) {
				v.pubs = append(v.pubs, p)
			} else {
				v.expiredPubs = append(v.expiredPubs, p)
			}
		case KindSubscription:
			s := new(Subscription)
			if json.Unmarshal(r.Value, s) != nil {
				continue
			}
			if now.Before(s.Expires) {
				v.subs = append(v.subs, s)
			} else {
				v.expiredSubs = append(v.expiredSubs, s)
			}
		}
	}
	sortPubs(v.pubs)
	return v
}

func (v *view) pub(etag string) *Publication {
	for _, p := range v.pubs {
		if p.ETag == etag {
			return p
		}
	}
	return nil
}

func (v *view) sub(id string) *Subscription {
	for _, s := range v.subs {
		if s.DialogID() == id {
			return s
		}
	}
	return nil
}

func (v *view) pidfs() []string {
	out := make([]string, len(v.pubs))
	for i, p := range v.pubs {
		out[i] = p.PIDF
	}
	return out
}

// record encodes a publication or subscription as a store record that the
// store keeps grace past its own expiry.
func record(id string, val any, expires time.Time, grace time.Duration, deleted bool) Record {
	b, _ := json.Marshal(val)
	return Record{ID: id, Value: b, Expires: expires.Add(grace), Deleted: deleted}
}
