package node

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/sipmesh/sipmesh/dnsprov"
)

func (n *Node) dnsConfig() dnsprov.Config {
	c := dnsprov.DefaultConfig()
	c.Cluster = n.mat.Cluster
	c.Listen = n.cfg.DNS.Listen
	if n.cfg.DNS.TTL > 0 {
		c.TTL = time.Duration(n.cfg.DNS.TTL) * time.Second
	}
	if r := n.cfg.DNS.RFC2136; r != nil {
		c.RFC2136.Server, c.RFC2136.Zone, c.RFC2136.KeyName = r.Server, r.Zone, r.KeyName
		c.RFC2136.KeyFile, c.RFC2136.Algorithm = n.cfg.Path(r.KeyFile), r.Algorithm
	}
	return c
}

// startDNS starts the embedded authoritative server and the RFC 2136
// updater, each when configured.
func (n *Node) startDNS() error {
	cfg := n.dnsConfig()
	log := n.log.With("component", "dns")
	if cfg.Listen != "" {
		srv, err := dnsprov.NewServer(cfg, n.ov, log)
		if err != nil {
			return fmt.Errorf("node: dns.listen: %w", err)
		}
		if err := srv.Start(); err != nil {
			return fmt.Errorf("node: dns.listen %s: %w", cfg.Listen, err)
		}
		n.dnsServer = srv
	}
	if cfg.RFC2136.Server != "" {
		u, err := dnsprov.NewUpdater(cfg, n.ov, log)
		if err != nil {
			return fmt.Errorf("node: dns.rfc2136: %w", err)
		}
		u.Start()
		n.dnsUpdater = u
	}
	return nil
}

// leaveDNS removes this node's records from the external server (graceful
// leave) and stops the embedded server.
func (n *Node) leaveDNS(ctx context.Context) {
	if n.dnsUpdater != nil {
		if err := n.dnsUpdater.Leave(ctx); err != nil {
			n.log.Warn("could not remove this node's DNS records; a survivor removes them once the node is seen dead", "err", err)
		}
		n.dnsUpdater.Close()
	}
	if n.dnsServer != nil {
		n.dnsServer.Close()
	}
}

// discoverSeeds asks DNS for _sipmesh._tcp.<cluster> when no seeds are
// configured.
func (n *Node) discoverSeeds(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return dnsprov.DiscoverSeeds(ctx, n.cfg.Overlay.Resolver, n.mat.Cluster)
}

// DNSRecordsJSON is `sipmesh dns records --json`.
type DNSRecordsJSON struct {
	Zone    string           `json:"zone"`
	Serial  uint32           `json:"serial,omitempty"` // the embedded server's serial, when it runs
	Records []dnsprov.Record `json:"records"`
}

// PathDNSRecords is the admin path of `sipmesh dns records`.
const PathDNSRecords = "/v1/dns/records"

func (n *Node) handleDNSRecords(w http.ResponseWriter, _ *http.Request) {
	if n.dnsServer != nil {
		z := n.dnsServer.Zone()
		writeJSON(w, http.StatusOK, DNSRecordsJSON{Zone: z.Origin, Serial: z.Serial, Records: z.Records})
		return
	}
	recs, err := dnsprov.Records(n.dnsConfig(), n.ov)
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorJSON{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, DNSRecordsJSON{Zone: n.mat.Cluster + ".", Records: recs})
}

// DNSRecords shows what the mesh publishes in DNS, as the node sees it.
func (c *AdminClient) DNSRecords(ctx context.Context) (DNSRecordsJSON, error) {
	var out DNSRecordsJSON
	return out, c.get(ctx, PathDNSRecords, nil, &out)
}
