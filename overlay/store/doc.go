// Package store owns the state replicated on the rings: one Store per role
// (registrar, presence, …), each keeping, for every key, a set of records
// merged record by record.
//
// Placement. Every node computes the holders of a key from its own view of
// the role's ring: the owner and R-1 replicas, nodes of other datacenters
// first (ring.Replicas). There is no coordinator: the node a request
// arrives at writes to the holders in parallel (itself by a direct call when
// it is one) and returns after W acknowledgements, or after every reachable
// holder acknowledged when fewer than W are reachable. A read asks every
// holder at once (so a dead owner costs no extra round trip), merges what
// they return, and repairs the holders whose copy differed.
//
// Records and merging. A key (an AOR) holds records with their own id (a
// contact), value, version, writer, expiry and deleted flag. The user's
// Merger decides per record id which of two versions wins; the default is
// the higher (version, writer), the version being a hybrid logical clock
// stamped by the coordinator. Ties the Merger leaves undecided are broken by
// a fixed total order (version, writer, deleted, expiry, value) so that every
// holder ends with the same bytes whatever order versions arrived in. There
// is no last-writer-wins on a whole key.
//
// Expiry and deletes. An expired record is never served and is dropped when
// seen. A delete is a tombstone that lives until the deleted record would
// have expired (a tombstone that beats a record takes the later of the two
// expiries), so neither handoff nor anti-entropy can bring back a deleted
// or expired record. Records that never expire get tombstones that live
// Config.TombstoneTTL. Expiry times are absolute: nodes' clocks must be
// synchronised (NTP) to well within the shortest expiry used.
//
// Moving data. On every ring change a node pushes each partition it holds to
// the holders that newly became responsible for it, and hands off (push,
// then drop what did not change meanwhile) partitions it no longer holds.
// Handoff pushes everything to the ring without the node before a graceful
// leave. Anti-entropy runs every Config.AntiEntropyInterval: for each
// partition it holds, a node compares a per-partition digest with the other
// holders and, on mismatch, per-key digests, exchanging the differing keys
// both ways; so a copy lost with a dead node is re-created without a write.
//
// The replica protocol is the gRPC service meshpb.Store; one Registry serves
// the stores of every role on a node's rpc.Server.
//
// store knows nothing of SIP: it must not import roles, dnsprov or node.
package store
