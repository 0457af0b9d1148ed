// Package certs owns the cluster's public-key infrastructure: creating the
// cluster CA, issuing node and operator certificates, revoking them through a
// CA-signed revocation list, and building the mutual-TLS configurations every
// listener and dialer of a node uses.
//
// A certificate's identity (cluster, name, datacenter, allowed roles, kind) is
// carried in one URI SAN so that it is visible with any X.509 tool:
//
//	sipmesh://<cluster>/node/<name>?dc=<dc>&roles=proxy,registrar
//	sipmesh://<cluster>/operator/<name>
//	sipmesh://<cluster>/ca          (the cluster CA itself)
//
// Verification is ours rather than crypto/tls's default so that every refusal
// has a typed reason (see Reason) that transports log and count.
//
// certs imports nothing else of sipmesh.
package certs
