// Package digest is HTTP Digest authentication for SIP (RFC 3261 §22, RFC
// 2617 with qop=auth, RFC 8760 for SHA-256; RFC 7616 for the algorithms'
// definitions).
//
// Challenges offer each configured algorithm as its own WWW-Authenticate (or
// Proxy-Authenticate) header, SHA-256 first, then MD5 (RFC 8760 §2.4: in order
// of preference). Nonces are stateless and verifiable on any node of the mesh:
// base64url(timestamp | issuer | random | HMAC-SHA256(secret, timestamp |
// issuer | random | realm)); a nonce older than the configured lifetime is
// stale and, when the response was otherwise right, is re-challenged with
// stale=true. With Config.Issuer set (sipmesh sets the node's name), a
// node takes only its own nonces and re-challenges another node's with
// stale=true, so the highest nonce-count seen per nonce, tracked behind
// the small [NonceCounter] interface (in memory by default), catches a
// replay sent to any node without asking the others.
//
// Verify returns typed errors built with roles/sipstatus: no usable
// credentials, an unknown algorithm, a nonce not ours, a stale nonce or a
// replayed nonce-count yield 401/407 with fresh challenges (stale=true where
// the password was proven); a wrong password or an unknown user yields 403;
// malformed credentials or a digest-uri that is not the Request-URI yield
// 400. The causes are sentinel errors (ErrNoCredentials, ErrStaleNonce, ...)
// reachable with errors.Is.
//
// Credentials come from a [Users] implementation; [FileUsers] reads the YAML
// users file and reloads it when it changes.
//
// The package depends on sipgo's message types, roles/sipstatus,
// roles/sipmsg and sigs.k8s.io/yaml; it must not import overlay,
// memberlist or another role.
package digest
