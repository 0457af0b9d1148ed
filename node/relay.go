package node

import (
	"fmt"
	"net/http"
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// defaultRelayPorts is used when a relay node's config has no relay.ports.
const defaultRelayPorts = "40000-49999"

// newRelay builds the RTP relay engine when the node has the relay role
// (nil otherwise).
func (n *Node) newRelay() (*relay.Relay, error) {
	if !slices.Contains(n.roles, certs.RoleRelay) {
		return nil, nil
	}
	ports := n.cfg.Relay.Ports
	if ports == "" {
		ports = defaultRelayPorts
	}
	lo, hi, err := ParsePortRange(ports)
	if err != nil {
		return nil, fmt.Errorf("node: key \"relay.ports\": %w", err)
	}
	ip, err := netip.ParseAddr(n.cfg.Node.Address)
	if err != nil {
		return nil, fmt.Errorf("node: key \"node.address\": %w", err)
	}
	rc := relay.DefaultConfig()
	rc.Interfaces = []relay.Interface{{Bind: ip}}
	rc.PortMin, rc.PortMax = lo, hi
	if inactivity, setup := n.cfg.Relay.Timeouts(); inactivity > 0 || setup > 0 {
		rc.InactivityTimeout, rc.SetupTimeout = inactivity, setup
	}
	rc.MaxSessions = n.cfg.Relay.MaxSessions
	rc.Logger = n.log.With("component", "relay")
	r, err := relay.New(rc)
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	n.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipmesh_relay_sessions", Help: "Media sessions (calls) the relay holds."},
			func() float64 { return float64(r.Stats().Sessions) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "sipmesh_relay_port_pairs", Help: "RTP/RTCP port pairs the relay has bound (two per stream)."},
			func() float64 { return float64(r.Stats().PortPairs) }),
	)
	return r, nil
}

// PathRelaySessions is the admin path of `sipmesh relay sessions`.
const PathRelaySessions = "/v1/relay/sessions"

func (n *Node) handleRelaySessions(w http.ResponseWriter, r *http.Request) {
	if n.relay == nil {
		writeJSON(w, http.StatusOK, []relay.SessionInfo{})
		return
	}
	ss, err := n.relay.Sessions(r.Context())
	if err != nil {
		writeJSON(w, http.StatusInternalServerError, errorJSON{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, ss)
}
