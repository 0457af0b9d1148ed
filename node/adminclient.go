package node

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/sipmesh/sipmesh/certs"
)

// AdminClient talks to a node's admin API with an operator or node
// certificate.
type AdminClient struct {
	base string
	hc   *http.Client
}

// Target says which node to ask and with which identity.
type Target struct {
	Node           string // host[:port], default port 7948
	CA, Cert, Key  string
	CRL            string // optional
	RequestTimeout time.Duration
}

// TargetFromConfig reads a node's config file: its admin address and its
// own certificate.
func TargetFromConfig(path string) (Target, error) {
	cfg, err := LoadConfig(path)
	if err != nil {
		return Target{}, err
	}
	addr := cfg.Admin.Listen
	if host, port, err := net.SplitHostPort(addr); err == nil && (host == "0.0.0.0" || host == "::") {
		addr = net.JoinHostPort(cfg.Node.Address, port)
	}
	return Target{Node: addr, CA: cfg.Path(cfg.TLS.CA), Cert: cfg.Path(cfg.TLS.Cert), Key: cfg.Path(cfg.TLS.Key), CRL: cfg.Path(cfg.TLS.CRL)}, nil
}

// NewAdminClient loads the identity and prepares a client.
func NewAdminClient(t Target) (*AdminClient, error) {
	if t.Node == "" || t.CA == "" || t.Cert == "" || t.Key == "" {
		return nil, fmt.Errorf("admin: say which node to ask: --config FILE, or --node HOST[:PORT] with --ca, --cert and --key")
	}
	mat, err := certs.Load(t.CA, t.Cert, t.Key, t.CRL)
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	host, port, err := net.SplitHostPort(t.Node)
	if err != nil {
		host, port = t.Node, strconv.Itoa(DefaultAdminPort)
	}
	timeout := t.RequestTimeout
	if timeout == 0 {
		timeout = 10 * time.Second
	}
	tr := &http.Transport{TLSClientConfig: mat.ClientConfig("", nil), ForceAttemptHTTP2: true}
	return &AdminClient{
		base: "https://" + net.JoinHostPort(host, port),
		hc:   &http.Client{Transport: tr, Timeout: timeout},
	}, nil
}

func (c *AdminClient) get(ctx context.Context, path string, q url.Values, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin: cannot reach %s (is the node running, and is this certificate from its cluster CA?): %w", c.base, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin: %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorJSON
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin: %s", e.Error)
		}
		return fmt.Errorf("admin: %s answered %s", u, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("admin: %s: bad answer: %w", u, err)
	}
	return nil
}

// Members lists the node's view of the mesh.
func (c *AdminClient) Members(ctx context.Context) ([]MemberJSON, error) {
	var out []MemberJSON
	return out, c.get(ctx, PathMembers, nil, &out)
}

// Ring shows one role's ring, or every role's when role is "".
func (c *AdminClient) Ring(ctx context.Context, role string) (RingJSON, error) {
	q := url.Values{}
	if role != "" {
		q.Set("role", role)
	}
	var out RingJSON
	return out, c.get(ctx, PathRing, q, &out)
}

// Lookup shows where a key lives on a role's ring (registrar when "").
func (c *AdminClient) Lookup(ctx context.Context, key, role string) (LookupJSON, error) {
	q := url.Values{"key": {key}}
	if role != "" {
		q.Set("role", role)
	}
	var out LookupJSON
	return out, c.get(ctx, PathLookup, q, &out)
}
