package dnsprov

import (
	"context"
	"fmt"
	"strings"
)

// DiscoverSeeds returns the overlay seeds of cluster as host:port, from the
// _sipmesh._tcp SRV records (RFC 2782 order) with targets resolved through
// the additional section or A/AAAA queries. resolverAddr is the DNS server
// to ask (host[:port]); empty means the system resolver. A node without
// overlay.join uses it to find the mesh.
func DiscoverSeeds(ctx context.Context, resolverAddr, cluster string) ([]string, error) {
	cluster = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(cluster)), ".")
	if cluster == "" {
		return nil, fmt.Errorf("dnsprov: discover seeds: no cluster domain")
	}
	r, err := newResolver(resolverAddr)
	if err != nil {
		return nil, err
	}
	name := seedPrefix + "." + cluster + "."
	ts, err := r.srvTargets(ctx, name, "tcp")
	if err != nil {
		return nil, fmt.Errorf("dnsprov: discover seeds: %w", err)
	}
	seeds := make([]string, 0, len(ts))
	for _, t := range ts {
		seeds = append(seeds, t.Addr)
	}
	if len(seeds) == 0 {
		return nil, fmt.Errorf("dnsprov: no seeds for %s: %s has no SRV records with resolvable targets at %s; set overlay.join or publish the cluster's DNS",
			cluster, name, strings.Join(r.servers, ","))
	}
	return seeds, nil
}
