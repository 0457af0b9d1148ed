package sipmsg

import (
	"iter"
	"strings"

	"github.com/emiago/sipgo/sip"
)

// Fields is a parsed message's header fields, in order: *sip.Request and
// *sip.Response are.
type Fields interface {
	Headers() []sip.Header
}

// Header returns the first header field named name, or nil. Names compare
// case-insensitively (RFC 3261 §7.3.1); a message parsed here has its
// compact names expanded, so the full name finds them.
//
// Roles look header fields up with Header and Headers rather than sipgo's
// GetHeader and GetHeaders, which lower-case the name of every field they
// pass, an allocation each for all but a few common names: on a REGISTER
// that was a quarter of the registrar's allocations.
func Header(m Fields, name string) sip.Header {
	for _, h := range m.Headers() {
		if sameName(h.Name(), name) {
			return h
		}
	}
	return nil
}

// Headers yields the header fields named name, in order (see Header).
func Headers(m Fields, name string) iter.Seq[sip.Header] {
	return func(yield func(sip.Header) bool) {
		for _, h := range m.Headers() {
			if sameName(h.Name(), name) && !yield(h) {
				return
			}
		}
	}
}

// sameName reports whether two header field names are the same. Names are
// tokens (RFC 3261 §25.1), ASCII, so equal names have equal lengths: the
// length test skips the case-folding comparison for nearly every field a
// lookup passes (strings.EqualFold cannot skip on length, as non-ASCII
// runes fold to ASCII; it was 3% of a REGISTER's CPU).
func sameName(a, b string) bool {
	return len(a) == len(b) && strings.EqualFold(a, b)
}

// Transport is the transport name in lower case, as roles compare them
// (RFC 3261 §20.42 makes them case-insensitive): the names sipgo gives
// ("UDP", "TLS", …) come out as constants, without the allocation of
// strings.ToLower on every datagram.
func Transport(name string) string {
	for _, t := range [...]string{"udp", "tcp", "tls", "ws", "wss", "sctp"} {
		if strings.EqualFold(name, t) {
			return t
		}
	}
	return strings.ToLower(name)
}
