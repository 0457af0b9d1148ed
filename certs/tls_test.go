package certs

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// refusals records the reasons an onRefuse callback saw.
type refusals struct {
	mu      sync.Mutex
	reasons []Reason
}

func (r *refusals) add(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reasons = append(r.reasons, ReasonOf(err))
}

func (r *refusals) get() []Reason {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Reason(nil), r.reasons...)
}

type handshakeResult struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// handshake runs one TLS connection over loopback. On success the server
// writes a byte the client reads, so that the client also learns of a
// refusal the server sends after the client's side of the handshake ended
// (TLS 1.3 client certificates are checked after the client is done).
func handshake(t *testing.T, srv, cli *tls.Config) handshakeResult {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type side struct {
		err error
		cs  tls.ConnectionState
	}
	srvDone := make(chan side, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srvDone <- side{err: err}
			return
		}
		defer c.Close()
		s := tls.Server(c, srv)
		_ = s.SetDeadline(time.Now().Add(5 * time.Second))
		err = s.Handshake()
		if err == nil {
			_, err = s.Write([]byte{'x'})
		}
		srvDone <- side{err: err, cs: s.ConnectionState()}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	tc := tls.Client(c, cli)
	_ = tc.SetDeadline(time.Now().Add(5 * time.Second))
	var res handshakeResult
	res.clientErr = tc.Handshake()
	if res.clientErr == nil {
		var b [1]byte
		_, res.clientErr = io.ReadFull(tc, b[:])
	}
	res.client = tc.ConnectionState()
	s := <-srvDone
	res.serverErr, res.server = s.err, s.cs
	return res
}

func TestTLSHandshake(t *testing.T) {
	for _, kt := range []KeyType{KeyECDSA, KeyEd25519} {
		t.Run(string(kt), func(t *testing.T) {
			ca := newTestCA(t, "example.test", kt)
			n1 := loadNode(t, ca, IssueRequest{Name: "n1", KeyType: kt}, "")
			n2 := loadNode(t, ca, IssueRequest{Name: "n2", Datacenter: "ams", KeyType: kt}, "")
			var srvRef, cliRef refusals
			res := handshake(t, n1.ServerConfig(false, srvRef.add), n2.ClientConfig("n1", cliRef.add))
			if res.serverErr != nil || res.clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", res.serverErr, res.clientErr)
			}
			if res.server.Version != tls.VersionTLS13 {
				t.Errorf("version %x, want TLS 1.3", res.server.Version)
			}
			peer, err := PeerIdentity(res.server)
			if err != nil || peer.Name != "n2" || peer.Datacenter != "ams" {
				t.Errorf("server sees %+v, %v; want n2 in ams", peer, err)
			}
			peer, err = PeerIdentity(res.client)
			if err != nil || peer.Name != "n1" {
				t.Errorf("client sees %+v, %v; want n1", peer, err)
			}
			if len(srvRef.get())+len(cliRef.get()) != 0 {
				t.Errorf("refusals on success: server %v, client %v", srvRef.get(), cliRef.get())
			}
		})
	}
}

func TestTLSRefusals(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	otherCA := newTestCA(t, "example.test", "")
	n1 := loadNode(t, ca, IssueRequest{Name: "n1"}, "")
	n2 := loadNode(t, ca, IssueRequest{Name: "n2"}, "")
	// Loaded before its revocation, as a node that has not seen the new list.
	gone := loadNode(t, ca, IssueRequest{Name: "gone"}, "")
	if _, err := ca.Revoke("gone"); err != nil {
		t.Fatal(err)
	}
	crl := readCRL(t, ca)
	for _, m := range []*Material{n1, n2} {
		if _, err := m.UpdateCRL(crl); err != nil {
			t.Fatal(err)
		}
	}
	// The stranger trusts both CAs, so that it is the other side that refuses.
	stranger := loadNode(t, otherCA, IssueRequest{Name: "n3"}, bundle(t, otherCA, ca))
	op := loadNode(t, ca, IssueRequest{Name: "alice", Operator: true}, "")

	for _, tc := range []struct {
		name        string
		server      *Material
		allowOp     bool
		client      func(onRefuse func(error)) *tls.Config
		wantServer  Reason // refusal the server's onRefuse must see ("" none)
		wantClient  Reason // refusal the client's onRefuse must see ("" none)
		wantFailure bool
	}{
		{
			name:   "revoked client",
			server: n1, client: func(f func(error)) *tls.Config { return gone.ClientConfig("", f) },
			wantServer: ReasonRevoked, wantFailure: true,
		},
		{
			name:   "client of another CA",
			server: n1, client: func(f func(error)) *tls.Config { return stranger.ClientConfig("", f) },
			wantServer: ReasonUnknownCA, wantFailure: true,
		},
		{
			name:   "client without certificate",
			server: n1,
			client: func(f func(error)) *tls.Config {
				c := n2.ClientConfig("", f)
				c.Certificates = nil
				return c
			},
			wantServer: ReasonNoCertificate, wantFailure: true,
		},
		{
			name:   "operator on a mesh listener",
			server: n1, client: func(f func(error)) *tls.Config { return op.ClientConfig("n1", f) },
			wantServer: ReasonOperator, wantFailure: true,
		},
		{
			name:   "operator on the admin listener",
			server: n1, allowOp: true, client: func(f func(error)) *tls.Config { return op.ClientConfig("n1", f) },
		},
		{
			name:   "server with another name",
			server: n1, client: func(f func(error)) *tls.Config { return n2.ClientConfig("n9", f) },
			wantClient: ReasonNameMismatch, wantFailure: true,
		},
		{
			name:   "revoked server",
			server: gone, client: func(f func(error)) *tls.Config { return n2.ClientConfig("gone", f) },
			wantClient: ReasonRevoked, wantFailure: true,
		},
		{
			name:   "server of another CA",
			server: stranger, client: func(f func(error)) *tls.Config { return n2.ClientConfig("", f) },
			wantClient: ReasonUnknownCA, wantFailure: true,
		},
		{
			name:   "TLS 1.2 client",
			server: n1,
			client: func(f func(error)) *tls.Config {
				c := n2.ClientConfig("n1", f)
				c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12
				return c
			},
			wantFailure: true,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var srvRef, cliRef refusals
			res := handshake(t, tc.server.ServerConfig(tc.allowOp, srvRef.add), tc.client(cliRef.add))
			if !tc.wantFailure {
				if res.serverErr != nil || res.clientErr != nil {
					t.Fatalf("handshake failed: server %v, client %v", res.serverErr, res.clientErr)
				}
				return
			}
			if res.serverErr == nil || res.clientErr == nil {
				t.Fatalf("handshake should fail on both sides: server %v, client %v", res.serverErr, res.clientErr)
			}
			checkRefusal(t, "server", res.serverErr, srvRef.get(), tc.wantServer)
			checkRefusal(t, "client", res.clientErr, cliRef.get(), tc.wantClient)
		})
	}
}

// checkRefusal checks that a side refused for want (its callback called
// once, its error carrying the reason), or did not refuse at all.
func checkRefusal(t *testing.T, side string, err error, seen []Reason, want Reason) {
	t.Helper()
	if want == "" {
		if len(seen) != 0 {
			t.Errorf("%s onRefuse saw %v, want nothing", side, seen)
		}
		return
	}
	if len(seen) != 1 || seen[0] != want {
		t.Errorf("%s onRefuse saw %v, want [%s]", side, seen, want)
	}
	if got := ReasonOf(err); got != want {
		t.Errorf("%s error %v has reason %q, want %q", side, err, got, want)
	}
}

// A certificate revoked while the cluster runs is refused on the next
// handshake, also when the client resumes a TLS session it got before.
func TestTLSRevokedAfterSessionResumption(t *testing.T) {
	ca := newTestCA(t, "example.test", "")
	n1 := loadNode(t, ca, IssueRequest{Name: "n1"}, "")
	n2 := loadNode(t, ca, IssueRequest{Name: "n2"}, "")
	var srvRef refusals
	srv := n1.ServerConfig(false, srvRef.add)
	cli := n2.ClientConfig("n1", nil)
	cli.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	cli.ServerName = "n1" // the session cache key; without it each new port is a new server

	for i, wantResume := range []bool{false, true} {
		res := handshake(t, srv, cli)
		if res.serverErr != nil || res.clientErr != nil {
			t.Fatalf("handshake %d: server %v, client %v", i, res.serverErr, res.clientErr)
		}
		if res.client.DidResume != wantResume {
			t.Fatalf("handshake %d: DidResume %v, want %v", i, res.client.DidResume, wantResume)
		}
	}
	if _, err := ca.Revoke("n2"); err != nil {
		t.Fatal(err)
	}
	if _, err := n1.UpdateCRL(readCRL(t, ca)); err != nil {
		t.Fatal(err)
	}
	res := handshake(t, srv, cli)
	if ReasonOf(res.serverErr) != ReasonRevoked || res.clientErr == nil {
		t.Fatalf("after revocation: server %v, client %v; want refused as revoked", res.serverErr, res.clientErr)
	}
	if got := srvRef.get(); len(got) != 1 || got[0] != ReasonRevoked {
		t.Errorf("onRefuse saw %v, want [revoked]", got)
	}
}

func TestPeerIdentityWithoutCertificate(t *testing.T) {
	_, err := PeerIdentity(tls.ConnectionState{})
	var re *RefusalError
	if !errors.As(err, &re) || re.Reason != ReasonNoCertificate {
		t.Fatalf("PeerIdentity(empty) = %v", err)
	}
}
