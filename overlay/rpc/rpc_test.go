package rpc_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/overlay"
	"github.com/sipmesh/sipmesh/overlay/rpc"
	"github.com/sipmesh/sipmesh/overlay/rpc/meshpb"
	"github.com/sipmesh/sipmesh/overlay/rpc/rpctest"
)

// node is one test node: a server on loopback and a client pool.
type node struct {
	name   string
	mat    *certs.Material
	server *rpc.Server
	client *rpc.Client
	logs   *rpctest.LogBuffer
	addr   string
}

func startNode(t *testing.T, ca *rpctest.CA, members *rpctest.Membership, name string, register func(*rpc.Server)) *node {
	t.Helper()
	n := &node{name: name, mat: ca.Node(name, ""), logs: &rpctest.LogBuffer{}}
	srv, err := rpc.NewServer(rpc.ServerConfig{Material: n.mat, Logger: n.logs.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if register != nil {
		register(srv)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.server, n.addr = srv, addr.String()
	t.Cleanup(srv.Stop)
	cl, err := rpc.NewClient(rpc.ClientConfig{Material: n.mat, Logger: n.logs.Logger()}, members.View(name))
	if err != nil {
		t.Fatal(err)
	}
	n.client = cl
	t.Cleanup(func() { cl.Close() })
	members.Set(overlay.Member{Name: name, Datacenter: "dc1", Roles: []string{"registrar"}, Services: map[string]string{overlay.ServiceRPC: n.addr}})
	return n
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

// whoService answers Ping with the caller's verified name.
type whoService struct{ meshpb.UnimplementedNodeServer }

func (whoService) Ping(ctx context.Context, _ *meshpb.PingRequest) (*meshpb.PingResponse, error) {
	name, _ := rpc.PeerName(ctx)
	return &meshpb.PingResponse{Name: name}, nil
}

func registerWho(s *rpc.Server) {
	desc := meshpb.Node_ServiceDesc
	desc.ServiceName = "test.Who"
	s.RegisterService(&desc, whoService{})
}

func TestPingAndPeerIdentity(t *testing.T) {
	ca := rpctest.NewCA(t)
	members := rpctest.NewMembership(0)
	a := startNode(t, ca, members, "a", nil)
	b := startNode(t, ca, members, "b", registerWho)

	rtt, err := a.client.Ping(ctx(t), "b")
	if err != nil {
		t.Fatalf("a pings b: %v", err)
	}
	if rtt <= 0 {
		t.Fatalf("round-trip %v", rtt)
	}
	cc, err := a.client.Conn("b")
	if err != nil {
		t.Fatal(err)
	}
	var resp meshpb.PingResponse
	if err := cc.Invoke(ctx(t), "/test.Who/Ping", &meshpb.PingRequest{}, &resp); err != nil {
		t.Fatalf("who: %v", err)
	}
	if resp.Name != "a" {
		t.Fatalf("b sees the caller as %q, want a", resp.Name)
	}
	// One connection per node, reused.
	cc2, _ := a.client.Conn("b")
	if cc != cc2 {
		t.Fatal("a second Conn(b) dialled a new connection")
	}
	if _, err := a.client.Ping(ctx(t), "nobody"); !errors.Is(err, rpc.ErrUnknownNode) {
		t.Fatalf("ping of an unknown node: %v, want ErrUnknownNode", err)
	}
	_ = b
}

func TestClientRefusesAnImpostor(t *testing.T) {
	ca := rpctest.NewCA(t)
	members := rpctest.NewMembership(0)
	a := startNode(t, ca, members, "a", nil)
	c := startNode(t, ca, members, "c", nil)
	// The membership claims b lives where c listens: a must not talk to c
	// believing it is b.
	members.Set(overlay.Member{Name: "b", State: overlay.StateAlive, Services: map[string]string{overlay.ServiceRPC: c.addr}})
	_, err := a.client.Ping(ctx(t), "b")
	if err == nil {
		t.Fatal("a reached c when calling b")
	}
	if !strings.Contains(a.logs.String(), "reason="+string(certs.ReasonNameMismatch)) {
		t.Fatalf("no name_mismatch refusal logged; error %v; log:\n%s", err, a.logs)
	}
}

// rawDial calls b's Ping presenting mat's certificate (none when nil),
// bypassing the pool and trusting whatever server answers, so that only
// the server's verification decides.
func rawDial(t *testing.T, mat *certs.Material, addr string) error {
	t.Helper()
	conf := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if mat != nil {
		conf.Certificates = []tls.Certificate{*mat.Certificate()}
	}
	cc, err := grpc.NewClient("passthrough:///"+addr, grpc.WithTransportCredentials(credentials.NewTLS(conf)))
	if err != nil {
		return err
	}
	defer cc.Close()
	c, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = meshpb.NewNodeClient(cc).Ping(c, &meshpb.PingRequest{})
	return err
}

func TestServerRefusesOperatorsAndStrangers(t *testing.T) {
	ca := rpctest.NewCA(t)
	members := rpctest.NewMembership(0)
	b := startNode(t, ca, members, "b", nil)

	if err := rawDial(t, ca.Node("ok", ""), b.addr); err != nil {
		t.Fatalf("a node of the cluster was refused: %v", err)
	}
	cases := []struct {
		mat    *certs.Material
		reason certs.Reason
	}{
		{ca.Material(certs.IssueRequest{Name: "ops", Operator: true}), certs.ReasonOperator},
		{rpctest.NewCA(t).Node("b", ""), certs.ReasonUnknownCA},
		{nil, certs.ReasonNoCertificate},
	}
	for _, tc := range cases {
		if err := rawDial(t, tc.mat, b.addr); err == nil {
			t.Fatalf("%s: call accepted", tc.reason)
		}
		rpctest.Eventually(t, 3*time.Second, func() error {
			if !strings.Contains(b.logs.String(), "reason="+string(tc.reason)) {
				return fmt.Errorf("server log has no %s refusal:\n%s", tc.reason, b.logs)
			}
			return nil
		})
	}
}

func TestPoolFollowsMembership(t *testing.T) {
	ca := rpctest.NewCA(t)
	members := rpctest.NewMembership(0)
	a := startNode(t, ca, members, "a", nil)
	b := startNode(t, ca, members, "b", nil)
	if _, err := a.client.Ping(ctx(t), "b"); err != nil {
		t.Fatal(err)
	}
	if got := a.client.Pooled(); len(got) != 1 || got[0] != "b" {
		t.Fatalf("pooled %v, want [b]", got)
	}

	// b dies: its connection is dropped and calls fail fast.
	b.server.Stop()
	members.SetState("b", overlay.StateDead)
	rpctest.Eventually(t, 3*time.Second, func() error {
		if got := a.client.Pooled(); len(got) != 0 {
			return fmt.Errorf("still pooled: %v", got)
		}
		return nil
	})
	if _, err := a.client.Ping(ctx(t), "b"); !errors.Is(err, rpc.ErrUnknownNode) {
		t.Fatalf("ping of a dead node: %v, want ErrUnknownNode", err)
	}

	// b comes back on another port with the same name: a finds it there.
	b2 := startNode(t, ca, members, "b", nil)
	if b2.addr == b.addr {
		t.Fatal("restarted on the same port; test proves nothing")
	}
	if _, err := a.client.Ping(ctx(t), "b"); err != nil {
		t.Fatalf("ping of b after its restart: %v", err)
	}
	// And a member that moves while pooled is redialled at its new place.
	b3 := startNode(t, ca, members, "b", nil)
	if _, err := a.client.Ping(ctx(t), "b"); err != nil {
		t.Fatalf("ping of b after it moved: %v", err)
	}
	b2.server.Stop()
	if _, err := a.client.Ping(ctx(t), "b"); err != nil {
		t.Fatalf("ping of b reached the old address? %v", err)
	}
	_ = b3
}

func BenchmarkPing(b *testing.B) {
	ca := rpctest.NewCA(b)
	members := rpctest.NewMembership(0)
	mk := func(name string) (*rpc.Client, string) {
		mat := ca.Node(name, "")
		srv, err := rpc.NewServer(rpc.ServerConfig{Material: mat})
		if err != nil {
			b.Fatal(err)
		}
		addr, err := srv.Listen("127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(srv.Stop)
		cl, err := rpc.NewClient(rpc.ClientConfig{Material: mat}, members.View(name))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cl.Close() })
		members.Set(overlay.Member{Name: name, Services: map[string]string{overlay.ServiceRPC: addr.String()}})
		return cl, addr.String()
	}
	a, _ := mk("a")
	mk("b")
	c := context.Background()
	if _, err := a.Ping(c, "b"); err != nil {
		b.Fatal(err)
	}
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Ping(c, "b"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func TestRefusalLogsAreLimitedButCounted(t *testing.T) {
	ca := rpctest.NewCA(t)
	logs := &rpctest.LogBuffer{}
	var mu sync.Mutex
	refused := 0
	srv, err := rpc.NewServer(rpc.ServerConfig{Material: ca.Node("b", ""), Logger: logs.Logger(), OnRefuse: func(error) {
		mu.Lock()
		refused++
		mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	addr, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	ops := ca.Material(certs.IssueRequest{Name: "ops", Operator: true})
	for range 5 {
		if err := rawDial(t, ops, addr.String()); err == nil {
			t.Fatal("operator accepted")
		}
	}
	rpctest.Eventually(t, 3*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if refused < 5 {
			return fmt.Errorf("%d refusals counted, want 5", refused)
		}
		return nil
	})
	if n := strings.Count(logs.String(), "refused a peer"); n != 1 {
		t.Fatalf("%d refusal log lines for one peer and reason, want 1:\n%s", n, logs)
	}
}

// bigService checks that a Put carries bigSize bytes of values, and answers
// Get with as many of its own.
type bigService struct {
	meshpb.UnimplementedStoreServer
}

const bigSize = 10 << 20 // more than the 4 MiB stream window, less than DefaultMaxMsgSize

func bigEntries() []*meshpb.Entry {
	var recs []*meshpb.Record
	for range bigSize / (1 << 20) {
		recs = append(recs, &meshpb.Record{Value: make([]byte, 1<<20)})
	}
	return []*meshpb.Entry{{Key: "k", Records: recs}}
}

func valueBytes(entries []*meshpb.Entry) int {
	n := 0
	for _, e := range entries {
		for _, r := range e.Records {
			n += len(r.Value)
		}
	}
	return n
}

func (bigService) Put(_ context.Context, req *meshpb.PutRequest) (*meshpb.PutResponse, error) {
	if n := valueBytes(req.Entries); n != bigSize {
		return nil, fmt.Errorf("received %d bytes, want %d", n, bigSize)
	}
	return &meshpb.PutResponse{}, nil
}

func (bigService) Get(context.Context, *meshpb.GetRequest) (*meshpb.GetResponse, error) {
	return &meshpb.GetResponse{Entries: bigEntries()}, nil
}

// The flow-control windows are fixed (server.go): a message larger than
// a stream's window, as a handoff batch may be, still arrives whole, both
// ways, again and again.
func TestMessagesLargerThanTheWindow(t *testing.T) {
	ca := rpctest.NewCA(t)
	members := rpctest.NewMembership(0)
	a := startNode(t, ca, members, "a", nil)
	startNode(t, ca, members, "b", func(s *rpc.Server) {
		desc := meshpb.Store_ServiceDesc
		desc.ServiceName = "test.Big"
		s.RegisterService(&desc, bigService{})
	})
	cc, err := a.client.Conn("b")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := cc.Invoke(ctx(t), "/test.Big/Put", &meshpb.PutRequest{Entries: bigEntries()}, &meshpb.PutResponse{}); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
		var resp meshpb.GetResponse
		if err := cc.Invoke(ctx(t), "/test.Big/Get", &meshpb.GetRequest{}, &resp); err != nil {
			t.Fatalf("get %d: %v", i, err)
		}
		if n := valueBytes(resp.Entries); n != bigSize {
			t.Fatalf("get %d: a received %d bytes, want %d", i, n, bigSize)
		}
	}
}
