package overlay

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sipmesh/sipmesh/certs"
)

// Refusal reasons of the overlay itself, next to certs.Reason values, as
// metric labels.
const (
	reasonBadMetadata = "bad_metadata" // unparsable, or contradicts the node's certificate
)

// metrics are the overlay's Prometheus collectors.
type metrics struct {
	members      *prometheus.GaugeVec
	ringRebuilds prometheus.Counter
	conns        *prometheus.GaugeVec
	refusals     *prometheus.CounterVec
	sentBytes    prometheus.Counter
	recvBytes    prometheus.Counter
}

// newMetrics creates the collectors and registers them with reg (nil: none).
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		members: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sipmesh_overlay_members",
			Help: "Members of the mesh known to this node, by state.",
		}, []string{"state"}),
		ringRebuilds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sipmesh_overlay_ring_rebuilds_total",
			Help: "Times the per-role rings were rebuilt after a membership change.",
		}),
		conns: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "sipmesh_overlay_transport_connections",
			Help: "Open verified gossip connections, by direction.",
		}, []string{"direction"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sipmesh_overlay_refusals_total",
			Help: "Peers refused at the gossip handshake or in gossiped membership, by reason.",
		}, []string{"reason"}),
		sentBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sipmesh_overlay_gossip_sent_bytes_total",
			Help: "Bytes written on gossip connections, TLS included.",
		}),
		recvBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "sipmesh_overlay_gossip_received_bytes_total",
			Help: "Bytes read from gossip connections, TLS included.",
		}),
	}
	// Zero series exist from the start so that rate() and alerts see them.
	for _, s := range []State{StateAlive, StateSuspect, StateDead, StateLeft} {
		m.members.WithLabelValues(string(s))
	}
	for _, d := range []string{"inbound", "outbound"} {
		m.conns.WithLabelValues(d)
	}
	for _, r := range []string{
		string(certs.ReasonNoCertificate), string(certs.ReasonUnknownCA), string(certs.ReasonExpired),
		string(certs.ReasonRevoked), string(certs.ReasonNoIdentity), string(certs.ReasonWrongCluster),
		string(certs.ReasonOperator), string(certs.ReasonNameMismatch), reasonBadMetadata,
	} {
		m.refusals.WithLabelValues(r)
	}
	if reg == nil {
		return m, nil
	}
	for i, c := range m.collectors() {
		if err := reg.Register(c); err != nil {
			for _, done := range m.collectors()[:i] {
				reg.Unregister(done)
			}
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("overlay: metrics already registered (one Overlay per registry): %w", err)
			}
			return nil, fmt.Errorf("overlay: register metrics: %w", err)
		}
	}
	return m, nil
}

func (m *metrics) collectors() []prometheus.Collector {
	return []prometheus.Collector{m.members, m.ringRebuilds, m.conns, m.refusals, m.sentBytes, m.recvBytes}
}

// unregister undoes newMetrics' registration, so that a failed New can be
// retried with the same registry.
func (m *metrics) unregister(reg prometheus.Registerer) {
	if reg == nil {
		return
	}
	for _, c := range m.collectors() {
		reg.Unregister(c)
	}
}
