package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/roles/digest"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// Default ports (DESIGN.md: contracts).
const (
	DefaultGossipPort = 7946
	DefaultRPCPort    = 7947
	DefaultAdminPort  = 7948
	DefaultSIPPort    = 5060
	DefaultSIPSPort   = 5061
)

// Config is a node's configuration file. Anything the certificate says
// (cluster, node name, datacenter, allowed roles) is not repeated here.
// Paths are relative to the file's folder.
type Config struct {
	Node    NodeSection    `json:"node"`
	TLS     TLSSection     `json:"tls"`
	Overlay OverlaySection `json:"overlay"`
	RPC     ListenSection  `json:"rpc"`
	Admin   ListenSection  `json:"admin"`
	Metrics ListenSection  `json:"metrics"`
	SIP     SIPSection     `json:"sip"`
	Relay   RelaySection   `json:"relay"`
	DNS     DNSSection     `json:"dns"`
	Log     LogSection     `json:"log"`

	dir string // folder of the config file
}

// NodeSection is the "node" key.
type NodeSection struct {
	// Address is the IP every listener binds on its default port.
	Address string `json:"address"`
	// Roles narrows the roles the certificate allows; empty means all of them.
	Roles []string `json:"roles,omitempty"`
}

// TLSSection is the "tls" key.
type TLSSection struct {
	CA   string `json:"ca"`
	Cert string `json:"cert"`
	Key  string `json:"key"`
	CRL  string `json:"crl,omitempty"` // optional; reloaded on change
}

// OverlaySection is the "overlay" key.
type OverlaySection struct {
	Join     []string `json:"join,omitempty"`     // host[:port]; empty: DNS SRV discovery
	Port     int      `json:"port,omitempty"`     // gossip port, default 7946
	Timing   string   `json:"timing,omitempty"`   // lan | wan
	Replicas int      `json:"replicas,omitempty"` // copies of each record, default 2
	// Resolver is the DNS server ("host:port") this node asks: for
	// _sipmesh._tcp.<cluster> when join is empty, and for the SIP servers
	// of foreign domains (sip.relay_foreign); empty: the system resolver.
	Resolver string `json:"resolver,omitempty"`
}

// ListenSection is a key holding one listen address.
type ListenSection struct {
	Listen string `json:"listen,omitempty"`
}

// SIPSection is the "sip" key.
type SIPSection struct {
	Listen []string `json:"listen,omitempty"`
	Users  string   `json:"users,omitempty"`
	// RateLimit is the most SIP messages per second accepted from one
	// source IP other than a mesh node (pike); 0: no limit.
	RateLimit float64 `json:"rate_limit,omitempty"`
	// RateBurst is how many messages above the rate a source may send at
	// once; default twice the rate.
	RateBurst int `json:"rate_burst,omitempty"`
	// RelayForeign lists the foreign domains subscribers may call
	// (resolved by RFC 3263 through overlay.resolver): "partner.example",
	// "*.partner.example" (its subdomains), or "*" (any). Empty: requests
	// for other domains are refused with 403.
	RelayForeign []string `json:"relay_foreign,omitempty"`
	// FlowTimer is the Flow-Timer in seconds given to outbound
	// registrations (RFC 5626 §5.4); 0: 120 on TCP/TLS/WS/WSS, 29 on UDP.
	FlowTimer int `json:"flow_timer,omitempty"`
	// TransactionWait is how long, in seconds, a finished transaction is
	// kept to answer retransmissions (RFC 3261 §17 Timers D, J, L, M;
	// RFC 6026). 0: the RFC's 64×T1 = 32 s. Kamailio's wait timer is 5 s;
	// a shorter wait saves memory under load (about 10 KB a call for the
	// wait), at the price of retransmissions that arrive later than it
	// being processed afresh. Process-wide: `sipmesh run` applies it.
	TransactionWait int `json:"transaction_wait,omitempty"`
	// DigestAlgorithms are the digest algorithms challenges offer, one
	// WWW-Authenticate or Proxy-Authenticate each, in order of preference
	// (RFC 8760 §2.4): "MD5", "SHA-256". Empty: MD5 then SHA-256 (node/sip.go
	// says why MD5 first). A client answers one; offering one algorithm
	// spares every client parsing a second challenge, as Kamailio's
	// default (MD5 alone) does. Read case-insensitively, kept canonical.
	DigestAlgorithms []digest.Algorithm `json:"digest_algorithms,omitempty"`
}

// RelaySection is the "relay" key: the RTP relay role (ports, timeouts,
// capacity) and, on nodes running SIP, when calls are relayed (mode).
type RelaySection struct {
	Ports string `json:"ports,omitempty"`
	// Mode says which calls entering the mesh at this node get their media
	// relayed: always (default), nat (only when a party looks to be
	// behind NAT) or never.
	Mode string `json:"mode,omitempty"`
	// Timeout frees a session that received no media from either party
	// for this long (a Go duration, default 60s); SetupTimeout one that
	// never received any (default 5m, at least Timeout).
	Timeout      string `json:"timeout,omitempty"`
	SetupTimeout string `json:"setup_timeout,omitempty"`
	// MaxSessions caps the relay's concurrent calls (0: the ports do).
	MaxSessions int `json:"max_sessions,omitempty"`

	timeout, setupTimeout time.Duration
}

// Timeouts are relay.timeout and relay.setup_timeout, 0 when not set.
func (r RelaySection) Timeouts() (inactivity, setup time.Duration) {
	return r.timeout, r.setupTimeout
}

// DNSSection is the "dns" key.
type DNSSection struct {
	Listen  string          `json:"listen,omitempty"`
	TTL     int             `json:"ttl,omitempty"` // seconds, default 30
	RFC2136 *RFC2136Section `json:"rfc2136,omitempty"`
}

// RFC2136Section configures dynamic updates of an external primary.
type RFC2136Section struct {
	Server    string `json:"server"`             // host[:port]
	Zone      string `json:"zone,omitempty"`     // default: the cluster domain
	KeyName   string `json:"key_name,omitempty"` // may be omitted when key_file is a BIND key block
	KeyFile   string `json:"key_file"`           // base64 secret, or a BIND key block (tsig-keygen)
	Algorithm string `json:"algorithm,omitempty"`
}

// LogSection is the "log" key.
type LogSection struct {
	Level  string `json:"level,omitempty"`  // debug | info | warn | error
	Format string `json:"format,omitempty"` // text | json
}

// LoadConfig reads, defaults and validates a config file.
func LoadConfig(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	cfg, err := ParseConfig(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// ParseConfig parses YAML; relative paths are resolved against dir.
func ParseConfig(data []byte, dir string) (*Config, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not valid YAML: %w", err)
	}
	cfg := &Config{dir: dir}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, explainDecodeError(err)
	}
	if err := cfg.defaultsAndValidate(); err != nil {
		return nil, err
	}
	return cfg, nil
}

// explainDecodeError turns encoding/json's messages into ones naming the key.
func explainDecodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Errorf("key %q: expected %s, got %s", typeErr.Field, typeErr.Type, typeErr.Value)
	}
	msg := err.Error()
	if i := strings.Index(msg, "unknown field "); i >= 0 {
		return fmt.Errorf("unknown key %s (see the config reference in README.md)", strings.TrimPrefix(msg[i:], "unknown field "))
	}
	return fmt.Errorf("bad config: %w", err)
}

// Path resolves a config-relative path.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(c.dir, p)
}

func (c *Config) defaultsAndValidate() error {
	if c.Node.Address == "" {
		return errors.New("key \"node.address\" is required: the IP this node's listeners bind, e.g. 127.0.0.11")
	}
	ip, err := netip.ParseAddr(c.Node.Address)
	if err != nil {
		return fmt.Errorf("key \"node.address\": %q is not an IP address", c.Node.Address)
	}
	if ip.IsUnspecified() {
		return fmt.Errorf("key \"node.address\": %q cannot be advertised to other nodes; give the node's own IP", c.Node.Address)
	}
	if err := certs.ValidRoles(c.Node.Roles); err != nil {
		return fmt.Errorf("key \"node.roles\": %w", err)
	}
	for k, v := range map[string]string{"tls.ca": c.TLS.CA, "tls.cert": c.TLS.Cert, "tls.key": c.TLS.Key} {
		if v == "" {
			return fmt.Errorf("key %q is required", k)
		}
	}
	if c.Overlay.Port == 0 {
		c.Overlay.Port = DefaultGossipPort
	}
	if c.Overlay.Port < 0 || c.Overlay.Port > 65535 {
		return fmt.Errorf("key \"overlay.port\": %d is not a port", c.Overlay.Port)
	}
	switch c.Overlay.Timing {
	case "":
		c.Overlay.Timing = "lan"
	case "lan", "wan":
	default:
		return fmt.Errorf("key \"overlay.timing\": %q is not one of lan, wan", c.Overlay.Timing)
	}
	if c.Overlay.Replicas == 0 {
		c.Overlay.Replicas = 2
	}
	if c.Overlay.Replicas < 1 || c.Overlay.Replicas > 5 {
		return fmt.Errorf("key \"overlay.replicas\": %d must be between 1 and 5", c.Overlay.Replicas)
	}
	for i, j := range c.Overlay.Join {
		if _, err := c.hostPort(j, DefaultGossipPort); err != nil {
			return fmt.Errorf("key \"overlay.join[%d]\": %w", i, err)
		}
	}
	if c.Overlay.Resolver != "" {
		if _, err := c.hostPort(c.Overlay.Resolver, 53); err != nil {
			return fmt.Errorf("key \"overlay.resolver\": %w", err)
		}
	}
	for key, l := range map[string]*ListenSection{"rpc": &c.RPC, "admin": &c.Admin} {
		port := DefaultRPCPort
		if key == "admin" {
			port = DefaultAdminPort
		}
		if l.Listen == "" {
			l.Listen = net.JoinHostPort(c.Node.Address, strconv.Itoa(port))
		}
		hp, err := c.hostPort(l.Listen, port)
		if err != nil {
			return fmt.Errorf("key %q: %w", key+".listen", err)
		}
		l.Listen = hp
	}
	if c.Metrics.Listen != "" {
		hp, err := c.hostPort(c.Metrics.Listen, 9090)
		if err != nil {
			return fmt.Errorf("key \"metrics.listen\": %w", err)
		}
		c.Metrics.Listen = hp
	}
	for i, l := range c.SIP.Listen {
		if _, err := ParseSIPListen(l); err != nil {
			return fmt.Errorf("key \"sip.listen[%d]\": %w", i, err)
		}
	}
	if c.SIP.RateLimit < 0 || c.SIP.RateBurst < 0 {
		return errors.New("key \"sip.rate_limit\"/\"sip.rate_burst\": must not be negative")
	}
	if c.SIP.RateLimit > 0 && c.SIP.RateBurst == 0 {
		c.SIP.RateBurst = int(2 * c.SIP.RateLimit)
	}
	for i, d := range c.SIP.RelayForeign {
		name := strings.TrimPrefix(strings.TrimSuffix(d, "."), "*.")
		if d == "*" {
			continue
		}
		if _, err := netip.ParseAddr(name); err == nil {
			continue
		}
		if certs.ValidDomain(strings.ToLower(name)) != nil {
			return fmt.Errorf("key \"sip.relay_foreign[%d]\": %q is not a domain, \"*.domain\" or \"*\"", i, d)
		}
	}
	if c.SIP.FlowTimer < 0 || c.SIP.FlowTimer > 3600 {
		return fmt.Errorf("key \"sip.flow_timer\": %d must be between 1 and 3600 seconds (0: the RFC 5626 defaults)", c.SIP.FlowTimer)
	}
	if c.SIP.TransactionWait < 0 || c.SIP.TransactionWait > 32 {
		return fmt.Errorf("key \"sip.transaction_wait\": %d must be between 1 and 32 seconds (0: the RFC's 32 s)", c.SIP.TransactionWait)
	}
	for i, a := range c.SIP.DigestAlgorithms {
		alg, err := digest.ParseAlgorithm(string(a))
		if err != nil || a == "" {
			return fmt.Errorf("key \"sip.digest_algorithms[%d]\": %q is not %s or %s", i, a, digest.MD5, digest.SHA256)
		}
		if slices.Contains(c.SIP.DigestAlgorithms[:i], alg) {
			return fmt.Errorf("key \"sip.digest_algorithms[%d]\": %s is listed twice", i, alg)
		}
		c.SIP.DigestAlgorithms[i] = alg
	}
	if c.Relay.Ports != "" {
		if _, _, err := ParsePortRange(c.Relay.Ports); err != nil {
			return fmt.Errorf("key \"relay.ports\": %w", err)
		}
	}
	if _, err := relay.ParseMode(c.Relay.Mode); err != nil {
		return fmt.Errorf("key \"relay.mode\": %q is not one of always, nat, never", c.Relay.Mode)
	}
	for key, d := range map[string]struct {
		s   string
		out *time.Duration
	}{"relay.timeout": {c.Relay.Timeout, &c.Relay.timeout}, "relay.setup_timeout": {c.Relay.SetupTimeout, &c.Relay.setupTimeout}} {
		if d.s == "" {
			continue
		}
		v, err := time.ParseDuration(d.s)
		if err != nil || v <= 0 {
			return fmt.Errorf("key %q: %q is not a positive duration such as 60s or 5m", key, d.s)
		}
		*d.out = v
	}
	if c.Relay.MaxSessions < 0 {
		return errors.New("key \"relay.max_sessions\": must not be negative")
	}
	if c.DNS.Listen != "" {
		hp, err := c.hostPort(c.DNS.Listen, 53)
		if err != nil {
			return fmt.Errorf("key \"dns.listen\": %w", err)
		}
		c.DNS.Listen = hp
	}
	if c.DNS.TTL < 0 || c.DNS.TTL > 86400 {
		return fmt.Errorf("key \"dns.ttl\": %d must be between 1 and 86400 seconds", c.DNS.TTL)
	}
	if r := c.DNS.RFC2136; r != nil {
		for k, v := range map[string]string{"server": r.Server, "key_file": r.KeyFile} {
			if v == "" {
				return fmt.Errorf("key \"dns.rfc2136.%s\" is required", k)
			}
		}
		if r.Algorithm == "" {
			r.Algorithm = "hmac-sha256"
		}
	}
	switch c.Log.Level {
	case "":
		c.Log.Level = "info"
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("key \"log.level\": %q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "":
		c.Log.Format = "text"
	case "text", "json":
	default:
		return fmt.Errorf("key \"log.format\": %q is not one of text, json", c.Log.Format)
	}
	return nil
}

// hostPort checks "host[:port]" and adds the default port.
func (c *Config) hostPort(s string, defPort int) (string, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		host, port = strings.Trim(s, "[]"), strconv.Itoa(defPort)
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", s)
	}
	if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
		return "", fmt.Errorf("%q: bad port %q", s, port)
	}
	return net.JoinHostPort(host, port), nil
}

// SIPListen is one parsed entry of sip.listen.
type SIPListen struct {
	Transport string // udp, tcp, tls, ws, wss
	Addr      string // host:port
}

// ParseSIPListen parses "udp://127.0.0.11:5060".
func ParseSIPListen(s string) (SIPListen, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return SIPListen{}, fmt.Errorf("%q is not transport://host:port (e.g. udp://127.0.0.11:5060)", s)
	}
	l := SIPListen{Transport: strings.ToLower(u.Scheme)}
	def := DefaultSIPPort
	switch l.Transport {
	case "udp", "tcp":
	case "tls":
		def = DefaultSIPSPort
	case "ws":
		def = 8080
	case "wss":
		def = 8443
	default:
		return SIPListen{}, fmt.Errorf("%q: unknown transport %q (udp, tcp, tls, ws, wss)", s, u.Scheme)
	}
	port := u.Port()
	if port == "" {
		port = strconv.Itoa(def)
	}
	l.Addr = net.JoinHostPort(u.Hostname(), port)
	return l, nil
}

// ParsePortRange parses "40000-40999".
func ParsePortRange(s string) (lo, hi int, err error) {
	a, b, ok := strings.Cut(s, "-")
	if ok {
		lo, err = strconv.Atoi(strings.TrimSpace(a))
		if err == nil {
			hi, err = strconv.Atoi(strings.TrimSpace(b))
		}
	}
	if !ok || err != nil || lo < 1024 || hi > 65535 || lo > hi || (hi-lo+1)%2 != 0 {
		return 0, 0, fmt.Errorf("%q must be an even-sized range LOW-HIGH within 1024-65535 (RTP/RTCP pairs), e.g. 40000-40999", s)
	}
	return lo, hi, nil
}
