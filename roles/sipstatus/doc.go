// Package sipstatus is the one place where errors become SIP responses.
//
// Every role (registrar, proxy, presence, the digest authenticator and the
// message validator) returns Go errors. Errors that should produce a
// particular final response carry it as an *Error (status code, reason
// phrase, extra header fields such as WWW-Authenticate, Min-Expires,
// Retry-After or Unsupported). The SIP edge turns any error into a response
// only through [Of] and [Response]; an error that carries no status becomes
// 500 Server Internal Error, and an error built with [Drop] produces no
// response at all (RFC 3261 §18.1.2, §17: responses and ACKs are never
// answered).
//
// The package owns the RFC 3261 §21 reason-phrase table and [NewResponse],
// which every role uses to answer a request it received (the proxy's
// stand-in responses for its own branches, which carry the branch's
// resolved destination, are sipgo's NewResponseFromRequest). It depends only on
// sipgo's message types and must not import overlay, memberlist or any role.
package sipstatus
