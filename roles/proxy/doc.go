// Package proxy is sipmesh's SIP edge and transaction-stateful proxy
// (RFC 3261 §16) on emiago/sipgo.
//
// It owns the SIP listeners (udp, tcp, tls, ws, wss from sip.listen), puts
// every message through roles/sipmsg (400 or drop; RFC 4475), answers on the
// flow a request came on, and routes: loose routing (§16.4, its own Route
// entries are removed), Max-Forwards/483, loop detection/482 (§16.3 step 4,
// a hash of the request in the branch), location lookup for the cluster's
// domain (404 unknown user, 480 known user without binding), parallel
// forking with CANCEL of the losing branches (§16.7, §16.10), Record-Route
// (two entries when the transport changes, RFC 5658), Path at the edge
// (RFC 3327), 100 Trying, stateless forwarding of ACK for 2xx and of stray
// 2xx retransmissions, and 407 challenges for out-of-dialog requests from
// subscribers of the domain (over UDP from a stateless UAS, RFC 3261
// §8.2.7: challenge.go). In-dialog BYEs over UDP and their responses are
// forwarded statelessly (§16.11: indialog.go).
//
// Flows. A phone is reached through the node that holds its connection or
// NAT binding (RFC 5626 edge proxy): that node puts a flow token in the
// user part of the Path and Record-Route URIs it adds ("ft-…", the
// transport and remote address, authenticated by an HMAC under a key of
// this process). A request that reaches a node with its own Route carrying
// one of its flow tokens is sent over that flow, unless it came from that
// very flow. So a callee registered over TCP through node 1 gets the INVITE
// on that same TCP connection wherever the call entered the mesh. Tokens are
// signed with Config.FlowKey, which the node derives from the cluster
// secret and its name, so they outlive a restart: a token this node cannot
// read was forged (403), a connection-oriented flow that is gone is 430
// Flow Failed (RFC 5626 §5.3). The node that looked the AOR up tries an
// instance's flows one at a time, the next one after a 430 or 408, and
// answers 480 when none is left. The edge marks the Path of an outbound
// registration with "ob" (§5.1) and adds Flow-Timer to its 200 (§5.4);
// sipgo answers the double-CRLF keep-alive on stream flows (§4.4.1).
//
// GRUUs (RFC 5627 §5.3). A Request-URI of the domain with a gr parameter
// goes to the contacts of the instance it names (Config.GRUUs), in and
// out of dialogs: 404 for a GRUU the domain did not issue, 480 when the
// instance has no binding.
//
// Foreign domains. Out-of-dialog requests for another domain are refused
// (403) unless Config.RelayDomains allows it; then an authenticated
// subscriber's request is sent to the servers RFC 3263 finds for it
// (Config.Resolver), tried in order (§4.3). Strangers never relay.
//
// Mesh peers. Requests from another node of the mesh are not challenged
// and get no Path. A peer is recognised by its source IP being the SIP
// address a member of the mesh advertises (Mesh.IsPeer); nodes send from
// their listening address (UDP from the listener socket, TCP bound to the
// node's IP) so that the check holds. This trusts the network between
// nodes: a phone sharing an IP with a node would be trusted too.
//
// Overload. Config.RateLimit bounds the messages accepted per second from
// one source IP that is not a mesh peer (a token bucket, like Kamailio's
// pike): UDP datagrams over the limit are dropped before they are parsed,
// stream requests before they are routed, with one warning per source and
// minute naming it. A request that waited in a UDP socket's queue longer
// than Config.QueueDelay is dropped unread for its client to retransmit
// (stale.go), so that a saturated node serves what is fresh; so is a
// REGISTER that waited that long in a mesh node's worker queue.
//
// Media relay (media.go). With Config.Media set, the node where a caller's
// INVITE enters the mesh (a request not from a mesh peer) anchors the
// call's media: Media.Wanted decides (relay.mode), and every SDP of the
// call that passes it (offer and answer in INVITE, 18x, 2xx, ACK,
// re-INVITE, UPDATE, PRACK; RFC 3264) goes through Media.SDP, which points
// it at the relay; the From tag of the initial INVITE tells the caller
// (side a) from the callee (side b). BYE from either side, CANCEL and an
// INVITE that gets no 2xx free the session (Media.Free); a relay that ends
// a session on its own makes the node call MediaEnded. Nodes after the
// anchor pass SDP as it is.
//
// The roles it serves are reached through the small interfaces Registrar,
// Locator, GRUUs, Resolver, Users, Authenticator, Presence and Media
// defined here. It must not import overlay, memberlist or another role.
package proxy
