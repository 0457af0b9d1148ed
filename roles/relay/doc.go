// Package relay owns the RTP media relay role: the relay engine, its
// control API over the overlay RPC, the SDP rewriting a proxy applies to
// send media through a relay, and the decision whether to relay a call.
//
// # Engine
//
// A [Relay] holds one session per call (keyed by Call-ID) with one stream
// per SDP m-line. Each stream has two legs, one per party: side "a" is the
// party that sent the initial INVITE, side "b" the party it went to. A leg
// is an RTP/RTCP port pair from Config.PortMin–PortMax (RTP even, RTCP =
// RTP+1, RFC 3550 §11) on the interface of the party's address family
// (IPv4 or IPv6; the two legs of a stream may differ). Media is symmetric
// (RFC 4961): a party sends to and receives from its own leg's ports.
//
// Latching: the first packet on a leg's port after allocation (or after
// Update with Relatch, e.g. on a re-INVITE) fixes the party's source
// address; later packets from any other source are dropped and counted.
// Until a party has been latched, packets for it go to the address its SDP
// advertised (Peer); RTCP for a party latched on RTP only goes to the
// latched RTP address with port+1. Datagrams are forwarded as they are
// (SRTP, muxed RTCP, STUN included); pion/rtp and pion/rtcp parse headers
// only for the counters. One goroutine per socket, one reusable buffer and
// header per goroutine: forwarding allocates nothing per packet.
//
// Timeouts: a session that received media from neither party for
// Config.InactivityTimeout (or, before its first packet, for
// Config.SetupTimeout) is freed and reported to Config.OnTimeout and to
// watchers ([Relay.Watch], and over RPC to the owning node's
// [Remote.Watch]). Freeing a session always closes its sockets and
// returns its ports before Free returns.
//
// Limits: Config.MaxSessions caps sessions ([ErrCapacity]); an exhausted
// port range gives [ErrPortsExhausted]; a party of an address family the
// relay has no interface for, or too many streams, gives [ErrUnsupported].
// [SIPStatus] maps them to 503 and 488.
//
// # Control API
//
// [Service] serves relaypb.Relay on an overlay rpc.Server (Allocate,
// Update, Free, List, Watch); [Remote] is the client side. Both the local
// *Relay and a *Remote implement [Controller], so a proxy calls the relay
// of a call the same way whether it runs on its own node or not. Errors
// cross the RPC as gRPC status with an ErrorInfo reason and come back
// wrapping the same sentinels. Calls in progress on a relay node that
// dies lose their media (the ports and latching live only in that
// process); the proxy learns it from a failing Update/Free or from the
// broken Watch stream, and new calls go to the next relay on the ring.
//
// # SDP
//
// [ParseSDP] reads the media of an offer or answer; [RewriteSDP] points
// c=, m= and a=rtcp at the relay and removes ICE attributes (see its doc
// for why). Retransmitted and spiralled INVITEs are idempotent: Allocate
// on an existing Call-ID returns the same ports, and a Peer address that
// is the relay's own is ignored, so an already rewritten SDP does not
// make the relay forward to itself.
//
// # NAT
//
// [NeedsRelay] and [BehindNAT] implement relay.mode "always" or "nat"
// (relay only when a party looks to be behind NAT).
//
// relay must not import memberlist, the proxy or node; it uses the overlay
// only through overlay/rpc.
package relay
