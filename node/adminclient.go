package node

import (
	"bytes"
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
	"github.com/sipmesh/sipmesh/roles/relay"
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
	return c.do(ctx, http.MethodGet, u, nil, out)
}

func (c *AdminClient) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	return c.do(ctx, http.MethodPost, c.base+path, body, out)
}

func (c *AdminClient) do(ctx context.Context, method, u string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("admin: cannot reach %s (is the node running, and is this certificate from its cluster CA?): %w", c.base, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("admin: %s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorJSON
		if json.Unmarshal(answer, &e) == nil && e.Error != "" {
			return fmt.Errorf("admin: %s", e.Error)
		}
		return fmt.Errorf("admin: %s answered %s", u, resp.Status)
	}
	if err := json.Unmarshal(answer, out); err != nil {
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

// PutRecords writes records (batched per key) through the node.
func (c *AdminClient) PutRecords(ctx context.Context, role string, recs []RecordPutJSON) error {
	var out map[string]int
	return c.post(ctx, PathRecordsPut, RecordsPutJSON{Role: role, Records: recs}, &out)
}

// GetRecords reads the live records of keys through the node.
func (c *AdminClient) GetRecords(ctx context.Context, role string, keys []string) (map[string][]map[string]any, error) {
	var out map[string][]map[string]any
	return out, c.post(ctx, PathRecordsGet, RecordsGetJSON{Role: role, Keys: keys}, &out)
}

// RelaySessions lists the media sessions of the node's relay.
func (c *AdminClient) RelaySessions(ctx context.Context) ([]relay.SessionInfo, error) {
	var out []relay.SessionInfo
	return out, c.get(ctx, PathRelaySessions, nil, &out)
}
