// Package ring places keys on nodes: an immutable consistent-hash ring
// (buraksezer/consistent, xxhash) over the alive members that run one role.
//
// A key hashes to one of a fixed number of partitions (DefaultPartitions);
// each partition has an owner and, for replication, an ordered list of
// further holders in which nodes of datacenters not yet covered come first.
// Every node builds its rings from its own view of the membership and, with
// the same view, computes the same owners.
//
// ring imports nothing of sipmesh.
package ring
