package sipmsg

import (
	"log/slog"
	"strings"
)

// DefaultMaxMessageSize bounds a message (header section and body): the
// largest UDP payload.
const DefaultMaxMessageSize = 65535

// Validator parses and checks SIP messages. It is safe for concurrent use;
// build it once per listener or role with New.
type Validator struct {
	schemes        map[string]bool
	requireMaxFwd  bool
	require        map[string]bool // nil: Require not checked
	proxyRequire   map[string]bool // nil: Proxy-Require not checked
	maxMessageSize int
	log            *slog.Logger
}

// Option configures a Validator.
type Option func(*Validator)

// New returns a Validator. Defaults: Request-URI schemes sip and sips,
// Max-Forwards optional (RFC 3261 §16.3 step 3 and §16.6 step 3: a proxy
// passes a request without it and adds one; RFC 4475 §3.4.1), Require and
// Proxy-Require not checked, messages up to DefaultMaxMessageSize octets.
func New(opts ...Option) *Validator {
	v := &Validator{
		schemes:        map[string]bool{"sip": true, "sips": true},
		maxMessageSize: DefaultMaxMessageSize,
		log:            slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(v)
	}
	return v
}

// WithSchemes sets the Request-URI schemes that are accepted; any other is
// answered with 416 Unsupported URI Scheme (RFC 3261 §8.2.2.1, §16.3 step 2).
func WithSchemes(schemes ...string) Option {
	return func(v *Validator) {
		v.schemes = make(map[string]bool, len(schemes))
		for _, s := range schemes {
			v.schemes[strings.ToLower(s)] = true
		}
	}
}

// WithMaxForwardsRequired makes a request without Max-Forwards a 400 (RFC
// 3261 §8.1.1 makes it mandatory for a UAC; RFC 2543 elements omit it).
func WithMaxForwardsRequired() Option {
	return func(v *Validator) { v.requireMaxFwd = true }
}

// WithRequire checks the Require header field of requests other than ACK and
// CANCEL against the option tags this element supports and answers 420 Bad
// Extension with Unsupported otherwise (RFC 3261 §8.2.2.3). Use it where the
// request terminates (registrar, presence agent).
func WithRequire(supported ...string) Option {
	return func(v *Validator) { v.require = tagSet(supported) }
}

// WithProxyRequire checks Proxy-Require the same way (RFC 3261 §16.3 step 5).
// Use it on the proxy.
func WithProxyRequire(supported ...string) Option {
	return func(v *Validator) { v.proxyRequire = tagSet(supported) }
}

// WithMaxMessageSize sets the largest message accepted; larger requests are
// answered 513 Message Too Large.
func WithMaxMessageSize(n int) Option {
	return func(v *Validator) {
		if n > 0 {
			v.maxMessageSize = n
		}
	}
}

// WithLogger sets the logger for rejected messages (debug level).
func WithLogger(l *slog.Logger) Option {
	return func(v *Validator) {
		if l != nil {
			v.log = l
		}
	}
}

func tagSet(tags []string) map[string]bool {
	m := make(map[string]bool, len(tags))
	for _, t := range tags {
		m[strings.ToLower(t)] = true
	}
	return m
}
