package relay

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// Interface is one local address the relay binds media ports on.
type Interface struct {
	// Bind is the local address; at most one Interface per address family.
	Bind netip.Addr
	// Advertise is the address written into SDP for ports of this
	// interface (e.g. the public address of a 1:1 NAT); zero = Bind.
	Advertise netip.Addr
}

func (i Interface) advertised() netip.Addr {
	if i.Advertise.IsValid() {
		return i.Advertise
	}
	return i.Bind
}

// Config configures a Relay. Start from DefaultConfig.
type Config struct {
	// Interfaces are the addresses media ports are bound on, at most one
	// IPv4 and one IPv6; the first is the default for a party whose family
	// is not known yet. Required.
	Interfaces []Interface
	// PortMin and PortMax bound the RTP/RTCP ports (node config
	// relay.ports, see node.ParsePortRange). RTP ports are even and RTCP =
	// RTP+1 (RFC 3550 §11); an odd PortMin starts at PortMin+1.
	PortMin, PortMax int
	// MaxSessions is the hard cap on concurrent sessions (calls); beyond
	// it Allocate fails with ErrCapacity. 0 = no cap but the ports.
	MaxSessions int
	// MaxStreams is the largest number of media streams (m-lines) of one
	// call; beyond it Allocate and Update fail with ErrUnsupported.
	MaxStreams int
	// InactivityTimeout frees a session that has forwarded media but has
	// received none from either side for this long (the call is dead or
	// its BYE was lost).
	InactivityTimeout time.Duration
	// SetupTimeout frees a session that has never received any media for
	// this long (a call that rang and failed while its free was lost). It
	// is longer than InactivityTimeout because a call may ring for
	// minutes without early media.
	SetupTimeout time.Duration
	// SweepInterval is how often timeouts are checked: a session is freed
	// within about one interval after its timeout, never before. 0 = a
	// quarter of InactivityTimeout, at most one second.
	SweepInterval time.Duration
	// OnTimeout, when set, is called (from one goroutine, in order) with
	// the final state of every session the relay freed on its own. The
	// proxy that owns the call must be told so that it can end the call.
	OnTimeout func(SessionInfo)
	// Logger receives session lifecycle events; nil discards.
	Logger *slog.Logger
}

// DefaultConfig returns the defaults; Interfaces and the port range must
// still be set.
func DefaultConfig() Config {
	return Config{
		MaxSessions:       0,
		MaxStreams:        8,
		InactivityTimeout: 60 * time.Second,
		SetupTimeout:      5 * time.Minute,
	}
}

func (c *Config) validate() error {
	def := DefaultConfig()
	if len(c.Interfaces) == 0 {
		return fmt.Errorf("relay: config: no interface to bind media ports on: %w", ErrInvalid)
	}
	var v4, v6 bool
	for _, in := range c.Interfaces {
		if !in.Bind.IsValid() {
			return fmt.Errorf("relay: config: interface without a bind address: %w", ErrInvalid)
		}
		is4 := in.Bind.Unmap().Is4()
		if (is4 && v4) || (!is4 && v6) {
			return fmt.Errorf("relay: config: two interfaces of one address family (%s): %w", in.Bind, ErrInvalid)
		}
		v4, v6 = v4 || is4, v6 || !is4
	}
	if c.PortMin%2 == 1 {
		c.PortMin++
	}
	if c.PortMin < 1024 || c.PortMax > 65535 || c.PortMax < c.PortMin+1 {
		return fmt.Errorf("relay: config: port range %d-%d must hold at least one RTP/RTCP pair within 1024-65535 (relay.ports, e.g. 40000-40999): %w", c.PortMin, c.PortMax, ErrInvalid)
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = def.MaxStreams
	}
	if c.InactivityTimeout <= 0 {
		c.InactivityTimeout = def.InactivityTimeout
	}
	if c.SetupTimeout <= 0 {
		c.SetupTimeout = def.SetupTimeout
	}
	if c.SetupTimeout < c.InactivityTimeout {
		c.SetupTimeout = c.InactivityTimeout
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = min(c.InactivityTimeout/4, time.Second)
	}
	return nil
}
