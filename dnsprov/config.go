package dnsprov

import (
	"fmt"
	"strings"
	"time"

	"github.com/sipmesh/sipmesh/overlay"
)

// Membership is the view of the mesh dnsprov needs; *overlay.Overlay
// satisfies it.
type Membership interface {
	// Members lists every known member, dead and left ones included.
	Members() []overlay.Member
	// Self is the local node.
	Self() overlay.Member
	// Subscribe returns a channel that receives (coalesced) a value after
	// every membership change, and a function that ends the subscription.
	Subscribe() (<-chan struct{}, func())
}

// Config configures what is published and how. Start from DefaultConfig:
// zero durations and empty names fall back to its values, but a false
// PerDatacenter stays false.
type Config struct {
	// Cluster is the cluster's DNS domain and SIP domain, e.g. "example.test".
	Cluster string

	// TTL of every record, also the negative-caching TTL (SOA minimum,
	// RFC 2308 §5). Short so that records follow the mesh. Default 30s.
	TTL time.Duration

	// ProxyRole is the role whose nodes receive SIP from phones. Default "proxy".
	ProxyRole string

	// PerDatacenter publishes the <dc>.<cluster> trees (see package doc).
	// Default true.
	PerDatacenter bool

	// Listen is the address of the embedded authoritative server, UDP and
	// TCP ("127.0.0.11:5353"; port 0 picks a free port). Empty: no server.
	Listen string

	// RFC2136 configures updates to a primary server. Server empty: off.
	RFC2136 RFC2136Config

	// Now is the clock (serials, markers, grace periods). Default time.Now.
	Now func() time.Time
}

// RFC2136Config says where and how to send dynamic updates. The JSON names
// are those of the node's YAML configuration (dns.rfc2136).
type RFC2136Config struct {
	// Server is the primary's address, host[:port] (default port 53).
	Server string `json:"server"`
	// Zone is the zone to update, e.g. "example.test."; default the cluster.
	// The cluster domain must be the zone or lie inside it.
	Zone string `json:"zone,omitempty"`
	// KeyName is the TSIG key's name; may be omitted when KeyFile is a BIND
	// key block, which names it.
	KeyName string `json:"key_name,omitempty"`
	// KeyFile holds the base64 secret alone, or BIND key blocks
	// (key "name" { algorithm hmac-sha256; secret "..."; };) as written by
	// tsig-keygen.
	KeyFile string `json:"key_file"`
	// Algorithm is the TSIG algorithm: hmac-sha256 (default), hmac-sha384,
	// hmac-sha512, hmac-sha224 or hmac-sha1.
	Algorithm string `json:"algorithm,omitempty"`

	// Timeout bounds one exchange with the server. Default 5s.
	Timeout time.Duration `json:"-"`
	// Resync is how often the records are re-read and repaired even
	// without membership changes. Default 30s.
	Resync time.Duration `json:"-"`
	// RetryMin and RetryMax bound the exponential backoff after a failed
	// pass. Defaults 500ms and 30s.
	RetryMin time.Duration `json:"-"`
	RetryMax time.Duration `json:"-"`
	// OrphanGrace is how long a node whose marker is in the zone must be
	// absent from the membership before its records are removed. It covers
	// nodes that joined but whose gossip has not arrived yet. Default 2m.
	OrphanGrace time.Duration `json:"-"`
	// Secret, when not empty, is the base64 TSIG secret and KeyFile is not
	// read (for tests and programmatic use).
	Secret string `json:"-"`
}

// DefaultConfig returns the defaults; set Cluster (and Listen or RFC2136).
func DefaultConfig() Config {
	return Config{
		TTL:           30 * time.Second,
		ProxyRole:     "proxy",
		PerDatacenter: true,
		Now:           time.Now,
		RFC2136: RFC2136Config{
			Algorithm:   "hmac-sha256",
			Timeout:     5 * time.Second,
			Resync:      30 * time.Second,
			RetryMin:    500 * time.Millisecond,
			RetryMax:    30 * time.Second,
			OrphanGrace: 2 * time.Minute,
		},
	}
}

// withDefaults fills zero fields and checks the cluster name.
func (c Config) withDefaults() (Config, error) {
	d := DefaultConfig()
	c.Cluster = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(c.Cluster)), ".")
	if c.Cluster == "" {
		return c, fmt.Errorf("dnsprov: no cluster domain configured: set the cluster name (the certificate's cluster)")
	}
	for _, l := range strings.Split(c.Cluster, ".") {
		if !validLabel(l) {
			return c, fmt.Errorf("dnsprov: cluster %q is not a valid DNS domain", c.Cluster)
		}
	}
	if c.TTL <= 0 {
		c.TTL = d.TTL
	}
	if c.ProxyRole == "" {
		c.ProxyRole = d.ProxyRole
	}
	if c.Now == nil {
		c.Now = d.Now
	}
	r := &c.RFC2136
	if r.Algorithm == "" {
		r.Algorithm = d.RFC2136.Algorithm
	}
	if r.Timeout <= 0 {
		r.Timeout = d.RFC2136.Timeout
	}
	if r.Resync <= 0 {
		r.Resync = d.RFC2136.Resync
	}
	if r.RetryMin <= 0 {
		r.RetryMin = d.RFC2136.RetryMin
	}
	if r.RetryMax < r.RetryMin {
		r.RetryMax = max(d.RFC2136.RetryMax, r.RetryMin)
	}
	if r.OrphanGrace <= 0 {
		r.OrphanGrace = d.RFC2136.OrphanGrace
	}
	return c, nil
}

// validLabel reports whether s is a lower-case LDH label (RFC 1123 §2.1).
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
