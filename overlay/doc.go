// Package overlay owns a node's membership in the mesh: a hashicorp/memberlist
// instance whose every packet and stream travels over mutual TLS (transport.go),
// the metadata each node gossips about itself (Member), the spreading of the
// cluster's revocation list, and one consistent-hash ring per role rebuilt from
// membership events (see package overlay/ring).
//
// overlay knows nothing of SIP, DNS or the admin API: it must not import
// roles, dnsprov or node. Roles and other consumers use the small interfaces
// they define themselves over *Overlay (Members, Ring, Subscribe), never
// memberlist directly.
package overlay
