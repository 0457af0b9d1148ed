package proxy

import (
	"hash/maphash"

	"github.com/emiago/sipgo/sip"
)

// An INVITE server transaction that sent a 2xx stays, in the "Accepted"
// state of RFC 6026 §8.7, for Timer L (64×T1, or the node's transaction
// wait) to absorb retransmissions of the INVITE: were one taken as a new
// request, the call would be forked again. sipgo's transaction holds for
// that the parsed INVITE and the 2xx, thousands of small objects a second
// that every collection marks again: at 1,600 calls/s and a 5 s wait the
// node's live heap was 62 MB, and each collection's 130-170 ms of marking
// on two cores shared with the load stalled the node's answers for 5-45
// ms. The proxy ends the transaction once the 2xx is relayed and keeps
// only the key here; sipgo then sees a retransmission as a new request,
// which the proxy drops before anything else (absorbed). The live heap at
// that rate is now 5 MB, a collection 2-4 ms. Later 2xx of other branches
// go upstream statelessly (relay), as §16.7 step 5 has them, and a CANCEL
// that comes after the 2xx gets 481 rather than 200: either way it changes
// nothing (RFC 3261 §9.2).
type acceptedInvites struct {
	seed maphash.Seed
	keys *recent[struct{}]
}

// relayAccepted relays the first 2xx to in upstream, then ends in's INVITE
// server transaction, its key remembered first so that no retransmission
// slips between the two.
func (p *Proxy) relayAccepted(in *inbound, res *sip.Response) {
	if in.tx == nil || !in.req.IsInvite() {
		p.relay(in, res)
		return
	}
	p.accepted.keys.put(requestKey(p.accepted.seed, in.req.Source(), in.req), struct{}{})
	p.relay(in, res)
	in.tx.Terminate()
}

// absorbed reports whether req retransmits an INVITE that was accepted.
func (p *Proxy) absorbed(req *sip.Request) bool {
	return req.IsInvite() && p.accepted.keys.seen(requestKey(p.accepted.seed, req.Source(), req))
}
