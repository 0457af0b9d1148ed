package store_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
	"github.com/sipmesh/sipmesh/overlay/rpc/rpctest"
	"github.com/sipmesh/sipmesh/overlay/store"
)

// TestRegistryServesSeveralRoles runs a registrar and a presence store on
// the same two nodes behind one gRPC service each: their keys never mix,
// and a role a node does not run is refused as unavailable.
func TestRegistryServesSeveralRoles(t *testing.T) {
	ca := rpctest.NewCA(t)
	members := rpctest.NewMembership(0)
	roles := []string{"registrar", "presence"}
	stores := map[string]map[string]*store.Store{}
	var mats []*certs.Material
	for _, name := range []string{"a", "b"} {
		mat := ca.Material(certs.IssueRequest{Name: name, Roles: roles})
		mats = append(mats, mat)
		srv, err := rpc.NewServer(rpc.ServerConfig{Material: mat})
		if err != nil {
			t.Fatal(err)
		}
		reg := store.NewRegistry()
		reg.Register(srv)
		addr, err := srv.Listen("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(srv.Stop)
		members.Set(overlay.Member{Name: name, Datacenter: "dc1", Roles: roles, Services: map[string]string{overlay.ServiceRPC: addr.String()}})
		cl, err := rpc.NewClient(rpc.ClientConfig{Material: mat}, members.View(name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		stores[name] = map[string]*store.Store{}
		for _, r := range roles {
			cfg := store.DefaultConfig(r)
			st, err := store.New(cfg, members.View(name), cl)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			if err := reg.Add(st); err != nil {
				t.Fatal(err)
			}
			stores[name][r] = st
		}
		if err := reg.Add(stores[name]["presence"]); err == nil {
			t.Fatal("a second presence store was registered")
		}
	}
	ctx := ctxT(t, 10*time.Second)
	key := "sip:alice@example.test"
	if err := stores["a"]["registrar"].Put(ctx, key, store.Record{ID: "c", Value: []byte("contact")}); err != nil {
		t.Fatal(err)
	}
	if err := stores["b"]["presence"].Put(ctx, key, store.Record{ID: "t", Value: []byte("tuple")}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b"} {
		for role, want := range map[string]string{"registrar": "c=contact", "presence": "t=tuple"} {
			got, err := stores[name][role].Get(ctx, key)
			if err != nil || len(got) != 1 || got[0].ID+"="+string(got[0].Value) != want {
				t.Fatalf("%s %s: %+v, %v; want %s", name, role, got, err, want)
			}
		}
	}
	cl, err := rpc.NewClient(rpc.ClientConfig{Material: mats[0]}, members.View("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	cc, err := cl.Conn("b")
	if err != nil {
		t.Fatal(err)
	}
	_, err = meshpb.NewStoreClient(cc).Get(ctx, &meshpb.GetRequest{Role: "relay", Keys: []string{key}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("get for a role b does not run: %v, want Unavailable", err)
	}
}
