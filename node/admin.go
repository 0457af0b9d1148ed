package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/pprof"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/roles/presence"
	"github.com/sipmesh/sipmesh/roles/presence/ringstore"
)

// Admin API paths. The JSON shapes are a contract (README "Admin JSON").
const (
	PathMembers = "/v1/members"
	PathRing    = "/v1/ring"
	PathLookup  = "/v1/lookup"
	PathMetrics = "/metrics"
)

// MemberJSON is one element of `sipmesh members --json`.
type MemberJSON struct {
	Name       string   `json:"name"`
	Datacenter string   `json:"datacenter"`
	Roles      []string `json:"roles"`
	State      string   `json:"state"`
	Address    string   `json:"address"`
}

// RingJSON is `sipmesh ring --json`.
type RingJSON struct {
	Partitions int                         `json:"partitions"`
	Roles      map[string][]RingMemberJSON `json:"roles"`
}

// RingMemberJSON is one member's share of a role's ring.
type RingMemberJSON struct {
	Name       string  `json:"name"`
	Partitions int     `json:"partitions"`
	Share      float64 `json:"share"`
	Items      *int    `json:"items,omitempty"` // records held, once the role stores any
}

// LookupJSON is `sipmesh lookup KEY --json`.
type LookupJSON struct {
	Key      string           `json:"key"`
	Role     string           `json:"role"`
	Owner    string           `json:"owner"`
	Replicas []string         `json:"replicas"`
	Holders  []string         `json:"holders"`
	Records  []map[string]any `json:"records"`
	// Presentity is the presence view of the records (role presence).
	Presentity *presence.Summary `json:"presentity,omitempty"`
}

// errorJSON is the body of every non-200 admin answer.
type errorJSON struct {
	Error string `json:"error"`
}

func (n *Node) serveAdmin() {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+PathMembers, n.handleMembers)
	mux.HandleFunc("GET "+PathRing, n.handleRing)
	mux.HandleFunc("GET "+PathLookup, n.handleLookup)
	mux.HandleFunc("GET "+PathDNSRecords, n.handleDNSRecords)
	mux.HandleFunc("GET "+PathRelaySessions, n.handleRelaySessions)
	mux.HandleFunc("POST "+PathRecordsPut, n.handleRecordsPut)
	mux.HandleFunc("POST "+PathRecordsGet, n.handleRecordsGet)
	metrics := promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{})
	mux.Handle("GET "+PathMetrics, metrics)
	// Profiles, for the operator chasing CPU or memory (go tool pprof
	// with the operator certificate); like the rest of this API they are
	// behind mutual TLS.
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)

	tlsCfg := n.mat.ServerConfig(true, func(err error) {
		n.log.Warn("admin: refused client", "reason", certs.ReasonOf(err), "err", err)
	})
	n.admin = &http.Server{Handler: mux, TLSConfig: tlsCfg, ErrorLog: slogErrorLog(n.log)}
	go func() {
		if err := n.admin.ServeTLS(n.adminLn, "", ""); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("admin API stopped", "err", err)
		}
	}()
	if n.metricLn != nil {
		m := http.NewServeMux()
		m.Handle("GET "+PathMetrics, metrics)
		n.metrics = &http.Server{Handler: m}
		go func() {
			if err := n.metrics.Serve(n.metricLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				n.log.Error("metrics listener stopped", "err", err)
			}
		}()
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (n *Node) handleMembers(w http.ResponseWriter, _ *http.Request) {
	ms := n.ov.Members()
	out := make([]MemberJSON, 0, len(ms))
	for _, m := range ms {
		out = append(out, MemberJSON{Name: m.Name, Datacenter: m.Datacenter, Roles: nonNil(m.Roles), State: string(m.State), Address: m.Address})
	}
	writeJSON(w, http.StatusOK, out)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// roleParam validates ?role=; empty means "all" where allowed.
func roleParam(r *http.Request, def string) (string, error) {
	role := r.URL.Query().Get("role")
	if role == "" {
		return def, nil
	}
	if !slices.Contains(certs.AllRoles, role) {
		return "", fmt.Errorf("unknown role %q: valid roles are %s", role, strings.Join(certs.AllRoles, ", "))
	}
	return role, nil
}

func (n *Node) handleRing(w http.ResponseWriter, r *http.Request) {
	role, err := roleParam(r, "")
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorJSON{err.Error()})
		return
	}
	roles := certs.AllRoles
	if role != "" {
		roles = []string{role}
	}
	out := RingJSON{Roles: map[string][]RingMemberJSON{}}
	for _, role := range roles {
		rg := n.ov.Ring(role)
		out.Partitions = rg.Partitions()
		list := []RingMemberJSON{}
		s, stored := n.stores.Store(role)
		for _, nd := range rg.Nodes() {
			p := rg.Load(nd.Name)
			m := RingMemberJSON{Name: nd.Name, Partitions: p, Share: float64(p) / float64(rg.Partitions())}
			if stored {
				if st, err := s.MemberStats(r.Context(), nd.Name); err == nil {
					m.Items = &st.Records
				}
			}
			list = append(list, m)
		}
		out.Roles[role] = list
	}
	writeJSON(w, http.StatusOK, out)
}

// NormalizeKey turns "sip:alice@example.test", "sips:Alice@Example.Test" or
// "alice@example.test" into the ring key "alice@example.test": the user part
// is case-sensitive (RFC 3261 §19.1.4), the host is not.
func NormalizeKey(key string) string {
	k := strings.TrimSpace(key)
	lower := strings.ToLower(k)
	for _, p := range []string{"sip:", "sips:"} {
		if strings.HasPrefix(lower, p) {
			k = k[len(p):]
			break
		}
	}
	if i := strings.IndexAny(k, ";?>"); i >= 0 {
		k = k[:i]
	}
	if user, host, ok := strings.Cut(k, "@"); ok {
		return user + "@" + strings.ToLower(host)
	}
	return strings.ToLower(k)
}

func (n *Node) handleLookup(w http.ResponseWriter, r *http.Request) {
	raw := r.URL.Query().Get("key")
	if strings.TrimSpace(raw) == "" {
		writeJSON(w, http.StatusBadRequest, errorJSON{"missing key: give an AOR such as sip:alice@example.test"})
		return
	}
	role, err := roleParam(r, certs.RoleRegistrar)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, errorJSON{err.Error()})
		return
	}
	key := NormalizeKey(raw)
	rg := n.ov.Ring(role)
	out := LookupJSON{Key: key, Role: role, Replicas: []string{}, Holders: []string{}, Records: []map[string]any{}}
	if owner, ok := rg.Owner(key); ok {
		out.Owner = owner.Name
	}
	for _, nd := range rg.Replicas(key, n.cfg.Overlay.Replicas) {
		out.Replicas = append(out.Replicas, nd.Name)
	}
	if s, ok := n.stores.Store(role); ok {
		holders, err := s.Holders(r.Context(), key)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, errorJSON{"holders of " + key + ": " + err.Error()})
			return
		}
		out.Holders = append(out.Holders, holders...)
		recs, err := s.Get(r.Context(), key)
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, errorJSON{"records of " + key + ": " + err.Error()})
			return
		}
		now := time.Now()
		for _, rec := range recs {
			out.Records = append(out.Records, recordJSON(rec, now))
		}
		if role == certs.RolePresence {
			sum := presence.Summarize(ringstore.Records(recs), now)
			out.Presentity = &sum
		}
	}
	writeJSON(w, http.StatusOK, out)
}
