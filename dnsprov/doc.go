// Package dnsprov owns the cluster's DNS presence: the records derived from
// live membership (zone.go), an embedded authoritative server that answers
// them (server.go), an RFC 2136 updater that keeps them in an operator's
// primary server (rfc2136.go), and the client side — seed discovery for
// joining nodes (discover.go) and RFC 3263 server location for phones and
// the proxy (resolve.go).
//
// dnsprov imports overlay (for Member and the ring) and nothing else of
// sipmesh: it must not import roles or node. It reads membership through
// the small Membership interface, which *overlay.Overlay satisfies.
// miekg/dns is used only inside this package; no exported identifier
// mentions it, so a move to its v2 touches this package alone.
//
// # What is published
//
// For the cluster domain C (e.g. example.test), built by Build:
//
//	C                  NAPTR  one per transport offered by some alive proxy (RFC 3263 §4.1)
//	_sips._tcp.C       SRV    alive proxies with a "sip-tls" service
//	_sip._tcp.C        SRV    alive proxies with "sip-tcp"
//	_sip._udp.C        SRV    alive proxies with "sip-udp"
//	_sips._ws.C        SRV    alive proxies with "sip-wss" (RFC 7118)
//	_sip._ws.C         SRV    alive proxies with "sip-ws"  (RFC 7118)
//	_sipmesh._tcp.C    SRV    gossip address of every alive node (seeds)
//	<node>.C           A/AAAA every alive node
//	C                  SOA, NS (embedded server only)
//
// NAPTR records share order 10 and differ in preference — TLS 10, TCP 20,
// UDP 30, WSS 40, WS 50 — so a client that cannot use the preferred
// transport still considers the others (RFC 3403 §4.1 forbids looking at a
// higher order once one order has a usable record). Only alive members count;
// suspect members are left out at once so that phones stop being sent to a
// node the failure detector already doubts. SRV weights are all 10.
// A service bound to an IP other than the node's gossip IP gets its own
// target name, <service>.<node>.C, because an SRV target must resolve to
// exactly the address the port belongs to (RFC 2782).
//
// # Per-datacenter preference
//
// EDNS Client Subnet (RFC 7871) is not used: phones sit behind NATs and
// carrier resolvers that strip or aggregate it, and many resolvers never
// send it to authoritative servers. Instead:
//
//   - every datacenter D of the membership gets its own tree: NAPTR at
//     D.C pointing to _sip._udp.D.C etc., whose SRV records list D's
//     proxies at priority 10 and all other proxies at priority 20, so a
//     phone configured with D.C prefers D and still fails over (RFC 2782:
//     lower priority is tried first);
//   - the embedded server additionally answers the cluster's own names
//     (_sip._udp.C …) with its own datacenter's nodes at priority 10 and the
//     others at 20: a resolver that asks the server in datacenter X — the
//     NS set normally lists servers in every datacenter and resolvers
//     prefer the fastest — is sent to X first.
//
// The RFC 2136 zone is shared by every resolver, so there the cluster's own
// names carry priority 10 for everyone; the per-datacenter trees are the
// same as on the embedded server.
//
// # Embedded server
//
// The zone each node serves is computed from its own view; SOA serials
// therefore differ between nodes, and zone transfers (AXFR/IXFR) are
// refused: a deployment that needs secondaries uses RFC 2136 to a real
// primary instead. The serial is max(previous+1, unix time) whenever the
// content changes, so it only grows (RFC 1982) even across restarts as long
// as the clock is sane.
//
// # RFC 2136
//
// Every record has one owner. A node owns the records that describe it (its
// A/AAAA, its SRV records, a TXT marker "sipmesh node=<n> start=<ns>" at
// <node>.C) and adds them when it starts, re-asserts them on every
// membership change and every Resync interval, and deletes them on graceful
// Leave. The records of a node that is dead or left are deleted by exactly
// one survivor: the owner of the dead node's name on a ring of the alive
// nodes. The NAPTR sets are maintained by the owner of the cluster name on
// that ring. Deletes always name specific RRs (RFC 2136 §2.5.4), never whole
// RRsets that could hold records someone else put there, and every delete of
// another node's records or of NAPTRs carries a value-dependent prerequisite
// (RFC 2136 §2.4.2) on what was read just before: if the dead node came back
// and rewrote its marker, or another maintainer changed the NAPTR set, the
// server answers NXRRSET and nothing is clobbered; the updater re-reads and
// tries again. A survivor whose view lags a restart may still remove the
// new life's records (clocks are compared); the node re-asserts them on its
// next membership change or Resync. A node seen in the zone but never in the
// membership is removed only after OrphanGrace. Updates and one SOA query
// per pass are TSIG-signed (proving the key is accepted); the other reads
// are plain, parallel UDP queries to the primary.
package dnsprov
