package registrar

import (
	"encoding/json"
	"time"
)

// Binding is one contact of an AOR: the JSON value of a store record.
// Field names are stable: `sipmesh lookup --json` shows them (README).
type Binding struct {
	// AOR is the key, "user@domain".
	AOR string `json:"aor"`
	// Contact is the contact URI as the UA registered it.
	Contact string `json:"contact"`
	// Q is the contact's q-value (RFC 3261 §20.10), 1 when absent.
	Q float64 `json:"q"`
	// CallID and CSeq order updates of one binding (RFC 3261 §10.3 step 7).
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
	// Path is the route set to the UA, outermost first (RFC 3327).
	Path []string `json:"path,omitempty"`
	// Instance and RegID are the RFC 5626 keys when the UA sent them.
	Instance string `json:"instance,omitempty"`
	RegID    int    `json:"reg_id,omitempty"`
	// Received is "transport:ip:port" the REGISTER came from (last hop).
	Received string `json:"received,omitempty"`
	// UserAgent is the User-Agent header field of the REGISTER.
	UserAgent string `json:"user_agent,omitempty"`
	// Node is the node whose registrar wrote the binding.
	Node string `json:"node,omitempty"`
	// ExpiresAt is when the binding expires, Unix seconds.
	ExpiresAt int64 `json:"expires_at"`
}

// Expires is the binding's expiry time.
func (b Binding) Expires() time.Time { return time.Unix(b.ExpiresAt, 0) }

// Record is one item of the replicated store, as the registrar sees it.
type Record struct {
	ID      string
	Value   []byte
	Expires time.Time
	Deleted bool
	// Version is the store's version of the record (0 on writes: the
	// store stamps it).
	Version uint64
}

// order is the part of a Binding that the merge rule reads.
type order struct {
	CallID string `json:"call_id"`
	CSeq   uint32 `json:"cseq"`
}

// Newer is the store's merge rule for registrar records (DESIGN.md: "a
// binding is its own record merged by RFC 3261 rules"): two versions of one
// binding written for the same Call-ID are ordered by CSeq, the higher one
// wins, whatever the order the versions reached a holder in (RFC 3261 §10.3
// step 7: a REGISTER with a lower CSeq is out of order). Versions from
// different Call-IDs (the UA rebooted, or another UA took the contact) are
// not ordered here: the store's version (a hybrid logical clock) decides.
func Newer(a, b Record) bool {
	var oa, ob order
	if json.Unmarshal(a.Value, &oa) != nil || json.Unmarshal(b.Value, &ob) != nil {
		return a.Version > b.Version
	}
	if oa.CallID != "" && oa.CallID == ob.CallID && oa.CSeq != ob.CSeq {
		return oa.CSeq > ob.CSeq
	}
	return a.Version > b.Version
}
