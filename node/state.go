package node

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/store"
	"github.com/sipmesh/sipmesh/roles/presence/ringstore"
	"github.com/sipmesh/sipmesh/roles/registrar"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// storedRoles are the roles whose state lives in a replicated store. Every
// node has a store for each, whatever its own roles: a node coordinates
// reads and writes for any key, and holds a partition only when it is on
// that role's ring.
var storedRoles = []string{certs.RoleRegistrar, certs.RolePresence}

// startState starts the RPC server, the client pool and the stores. It must
// run after the overlay exists and before the node joins.
func (n *Node) startState() error {
	sc := rpc.DefaultServerConfig()
	sc.Material, sc.Logger = n.mat, n.log.With("component", "rpc")
	srv, err := rpc.NewServer(sc)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	cl, err := rpc.NewClient(n.rpcClientConfig(), n.ov)
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.rpcServer, n.rpcClient, n.stores = srv, cl, store.NewRegistry()
	for _, role := range storedRoles {
		cfg := store.DefaultConfig(role)
		cfg.Replicas = n.cfg.Overlay.Replicas
		// W defaults to 2 but can never exceed R: with overlay.replicas: 1
		// a write is acknowledged by the one holder.
		cfg.WriteQuorum = min(cfg.WriteQuorum, cfg.Replicas)
		cfg.Logger = n.log.With("component", "store") // the store adds its role
		switch role {
		case certs.RoleRegistrar:
			cfg.Merger = registrarMerger // RFC 3261 §10.3 ordering per binding
		case certs.RolePresence:
			cfg.Merger = ringstore.Merger // a subscription's higher CSeq wins
		}
		s, err := store.New(cfg, n.ov, cl)
		if err != nil {
			return fmt.Errorf("node: %w", err) // names the store already
		}
		if err := n.stores.Add(s); err != nil {
			return fmt.Errorf("node: store %s: %w", role, err)
		}
	}
	n.stores.Register(srv)
	if n.relay, err = n.newRelay(); err != nil {
		return err
	}
	if n.relay != nil {
		relay.NewService(n.relay).Register(srv)
	}
	go func() {
		if err := srv.Serve(n.rpcLn); err != nil {
			n.log.Error("rpc server stopped", "err", err)
		}
	}()
	return nil
}

// handoffState hands every store's records to their next holders, then stops
// leaving. Called before leaving the mesh.
func (n *Node) handoffState(ctx context.Context) {
	for _, role := range storedRoles {
		if s, ok := n.stores.Store(role); ok {
			if err := s.Handoff(ctx); err != nil {
				n.log.Warn("handoff before leaving was incomplete; anti-entropy will restore the copies", "role", role, "err", err)
			}
		}
	}
}

// stopState stops the stores and the RPC server.
func (n *Node) stopState() {
	for _, role := range storedRoles {
		if s, ok := n.stores.Store(role); ok {
			s.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	n.rpcServer.GracefulStop(ctx)
	n.rpcClient.Close()
	if n.relay != nil {
		n.relay.Close()
	}
}

// recordJSON is one stored record as `sipmesh lookup` shows it: the store's
// fields, plus the fields of the record's value when it is a JSON object
// (a registrar binding's "contact", for instance).
func recordJSON(r store.Record, now time.Time) map[string]any {
	out := map[string]any{}
	var v map[string]any
	value := r.Value
	if b, err := registrar.DecodeBinding(value); err == nil && registrar.IsBinding(value) {
		value, _ = json.Marshal(b)
	}
	if json.Unmarshal(value, &v) == nil {
		for k, x := range v {
			out[k] = x
		}
	} else {
		out["value"] = string(r.Value)
	}
	out["id"] = r.ID
	out["writer"] = r.Writer
	// A string: hybrid-clock versions exceed what JSON numbers read as
	// floats hold exactly.
	out["version"] = strconv.FormatUint(r.Version, 10)
	if !r.Expires.IsZero() {
		out["expires"] = int(r.Expires.Sub(now).Round(time.Second).Seconds())
	}
	return out
}

func (n *Node) rpcClientConfig() rpc.ClientConfig {
	c := rpc.DefaultClientConfig()
	c.Material = n.mat
	c.Logger = n.log.With("component", "rpc")
	return c
}
