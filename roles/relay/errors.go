package relay

import (
	"errors"
	"net/http"
)

// Refusals. The proxy tells them apart with errors.Is, on the local
// [Relay] and through a [Remote] alike (the gRPC service carries them as
// status details), and answers with [SIPStatus].
var (
	// ErrCapacity: the relay holds Config.MaxSessions sessions. 503.
	ErrCapacity = errors.New("relay: at capacity (session limit reached)")
	// ErrPortsExhausted: no free RTP/RTCP port pair is left in the
	// configured range (or every free one is taken by another program). 503.
	ErrPortsExhausted = errors.New("relay: no free port pair left in relay.ports")
	// ErrUnsupported: the request cannot be relayed as asked, e.g. a party
	// uses an address family the relay has no address for, or a call has
	// more streams than Config.MaxStreams. 488.
	ErrUnsupported = errors.New("relay: media cannot be relayed as offered")
	// ErrNotFound: no session has this Call-ID (freed, timed out, or the
	// relay restarted).
	ErrNotFound = errors.New("relay: no such session")
	// ErrInvalid: a malformed request (empty Call-ID, an address that does
	// not parse); a bug in the caller.
	ErrInvalid = errors.New("relay: invalid request")
	// ErrClosed: the relay is shutting down. 503.
	ErrClosed = errors.New("relay: closed")
	// ErrNoRelay: the proxy found no relay that would take the call: the
	// relay ring is empty, or every relay on it failed or refused. It
	// never crosses the RPC; the proxy wraps it around the last relay's
	// error once it has tried them all. 503.
	ErrNoRelay = errors.New("relay: no relay available")
)

// SIPStatus is the final response a proxy sends when allocating media for
// a call failed with err: 503 (Service Unavailable) when the relay is full,
// out of ports or closing, 488 (Not Acceptable Here, RFC 3261 §21.4.26)
// when the offer cannot be relayed, 500 for anything else (including a
// relay that cannot be reached: the proxy should try the next relay on the
// ring before giving up, and then wrap ErrNoRelay, which is 503). 0 for a
// nil error. ErrUnsupported wins over ErrNoRelay: an offer no relay can
// take is the offer's fault.
func SIPStatus(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUnsupported):
		return 488
	case errors.Is(err, ErrCapacity), errors.Is(err, ErrPortsExhausted), errors.Is(err, ErrClosed),
		errors.Is(err, ErrNoRelay):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
