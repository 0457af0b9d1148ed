// Package sipmsg is the strict RFC 3261 reading of SIP messages that sipmesh
// puts in front of emiago/sipgo's parser.
//
// sipgo's parser is fast and liberal: it accepts messages that RFC 4475 §3.1.2
// and §3.2/§3.3 say must be rejected (a SIP/7.0 request, a CSeq method that
// differs from the request method, two Call-IDs, two Content-Lengths, a
// Request-URI carrying escaped headers, a non-GMT Date, a bare "z9hG4bK"
// branch) and mis-reads some valid ones (RFC 4475 §3.1.1.1 "wsinv": the
// second and third Via values get an empty transport and the transport glued
// to the host, To/From/Contact parameter names and values keep the
// surrounding white space, the To host keeps a trailing space; §3.1.1.2
// "intmeth": the case-sensitive method is upper-cased; §3.3.3 "novelsc": a
// valid absoluteURI scheme with a "." is refused as an invalid scheme, so
// the 416 the RFC asks for becomes a parse error). This package parses
// the message itself against the RFC 3261 §25 grammar for the start line and
// for the header fields a proxy and registrar depend on (Via, To, From,
// Contact, Route, Record-Route, Call-ID, CSeq, Max-Forwards, Content-Length,
// Content-Type, Date, Expires, Require, Proxy-Require, Supported), checks the
// RFC 3261 §8.2 and §16.3 rules, and builds the sipgo message from its own
// parse, so that every role works on sipgo types whose fields are right.
//
// A rejected message yields a *sipstatus.Error: the status to answer with and
// a reason phrase naming the defect (400 "Bad CSeq", 400 "Missing Call-ID",
// 416, 420, 505, 513), or a drop (status 0) when no response can or may be
// sent: a response, an ACK, an unrecognisable start line, or no readable
// topmost Via. When a response can be sent, Parse also returns the part of the
// request it could read so that sipstatus.Response can build the answer. The
// cause is a *Defect naming the header field and the problem.
//
// Conventions of the returned sipgo values: URI user, password and parameters
// stay in their escaped wire form (use [Unescape]); header and URI parameter
// names are lower-cased (they are case-insensitive, RFC 3261 §7.3.1), values
// are kept; a quoted parameter value is kept with its quotes unless it
// contains white space, in which case it is kept as the quoted-string's inner
// text so that sipgo re-serializes it correctly (use [ParamValue]); a display
// name is the quoted-string's inner text with its escapes, or the tokens of an
// unquoted name joined by single spaces; compact header names are expanded.
//
// Where to use it: [Validator.Parse] on a datagram (UDP, a WebSocket
// message), [Validator.ParseStream] on a TCP/TLS byte stream,
// [Validator.DatagramFilter] to put Parse in front of a sipgo server's
// datagram transports (sip.WithTransportLayerReadFilter), and
// [Validator.Validate] on a request a sipgo handler received over a stream
// transport, where only the whole-message rules can still be checked.
//
// The package depends only on sipgo and roles/sipstatus; it must not import
// overlay, memberlist or any role.
package sipmsg
