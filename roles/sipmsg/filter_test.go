package sipmsg

import (
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/emiago/sipgo"
	"github.com/emiago/sipgo/sip"
	"github.com/sipmesh/sipmesh/roles/sipstatus"
)

// TestDatagramFilter runs a sipgo server behind the filter on loopback UDP:
// the valid torture message reaches the handler with its fields read right
// (sipgo alone mis-reads the wsinv Via values), the invalid one is answered
// by the reject callback and never reaches the handler.
func TestDatagramFilter(t *testing.T) {
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rejected := make(chan Rejection, 4)
	filter := New().DatagramFilter(func(r Rejection) {
		rejected <- r
		if res := sipstatus.Response(asRequest(r.Message), r.Err); res != nil {
			_, _ = conn.WriteTo([]byte(res.String()), r.Props.RemoteAddr)
		}
	}, nil)
	ua, err := sipgo.NewUA(sipgo.WithUserAgentTransportLayerOptions(sip.WithTransportLayerReadFilter(filter)))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := sipgo.NewServer(ua, sipgo.WithServerLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *sip.Request, 4)
	handler := func(req *sip.Request, tx sip.ServerTransaction) {
		got <- req
		_ = tx.Respond(sip.NewResponseFromRequest(req, 603, "Decline", nil))
	}
	srv.OnInvite(handler)
	srv.OnOptions(handler)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeUDP(conn)
	}()
	defer func() {
		_ = srv.Close()
		_ = ua.Close()
		_ = conn.Close()
		<-done
	}()

	client, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()

	if _, err := client.WriteTo(readTorture(t, "wsinv"), conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	select {
	case req := <-got:
		vs := vias(req)
		if len(vs) != 3 || vs[1].Transport != "TCP" || vs[1].Host != "spindle.example.com" || vs[2].Host != "192.168.255.111" {
			t.Fatalf("handler saw Vias %v", vs)
		}
		if tag, _ := req.To().Params.Get("tag"); tag != "1918181833n" {
			t.Fatalf("handler saw To %v", req.To())
		}
	case r := <-rejected:
		t.Fatalf("wsinv rejected: %v", r.Err)
	case <-time.After(5 * time.Second):
		t.Fatal("wsinv never reached the handler")
	}

	if _, err := client.WriteTo(readTorture(t, "mismatch01"), conn.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		n, _, err := client.ReadFrom(buf)
		if err != nil {
			t.Fatalf("no 400 for mismatch01: %v", err)
		}
		res, err := Parse(buf[:n])
		if err != nil {
			continue
		}
		r, ok := res.(*sip.Response)
		if !ok || r.CallID().Value() != "mismatch01.dj0234sxdfl3" {
			continue // responses to wsinv
		}
		if r.StatusCode != 400 {
			t.Fatalf("mismatch01 answered %d", r.StatusCode)
		}
		break
	}
	select {
	case req := <-got:
		t.Fatalf("mismatch01 reached the handler: %s", req.Short())
	default:
	}
}

func TestHasOptionTag(t *testing.T) {
	msg, err := sip.ParseMessage([]byte("REGISTER sip:example.test SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKs\r\n" +
		"From: <sip:a@example.test>;tag=1\r\nTo: <sip:a@example.test>\r\nCall-ID: s\r\nCSeq: 1 REGISTER\r\n" +
		"Supported: path, GRUU\r\nSupported: outbound\r\nContent-Length: 0\r\n\r\n"))
	if err != nil {
		t.Fatal(err)
	}
	req := msg.(*sip.Request)
	for tag, want := range map[string]bool{"path": true, "gruu": true, "outbound": true, "Outbound": true, "timer": false, "pat": false} {
		if got := HasOptionTag(req, "Supported", tag); got != want {
			t.Errorf("HasOptionTag(Supported, %q) = %v, want %v", tag, got, want)
		}
	}
}

func TestEscapeParam(t *testing.T) {
	for in, want := range map[string]string{
		"urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6": "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
		"a b;c=d%e\"": "a%20b%3Bc%3Dd%25e%22",
		"[v6]/x&y+z$": "[v6]/x&y+z$",
	} {
		got := EscapeParam(in)
		if got != want {
			t.Errorf("EscapeParam(%q) = %q, want %q", in, got, want)
		}
		if back := Unescape(got); back != in {
			t.Errorf("Unescape(EscapeParam(%q)) = %q", in, back)
		}
		if _, err := parseURI("sip:a@example.test;gr=" + got); err != nil {
			t.Errorf("sip:a@example.test;gr=%s does not parse: %v", got, err)
		}
	}
}

// A plain datagram goes to sipgo as it came, unread; one that is not is
// what Parse read, written again.
func TestDatagramFilterPassesPlain(t *testing.T) {
	filter := New().DatagramFilter(nil, nil)
	props := sip.TransportReadProps{Transport: "UDP"}
	plain := readFile(t, filepath.Join("testdata", "sipp", "invite-auth.sip"))
	out, err := filter(props, plain)
	if err != nil || len(out) == 0 || &out[0] != &plain[0] {
		t.Fatalf("plain INVITE: filter returned %d octets (err %v), not the datagram itself", len(out), err)
	}
	reg := readFile(t, filepath.Join("testdata", "sipp", "register.sip"))
	out, err = filter(props, reg)
	if err != nil || len(out) == 0 || &out[0] == &reg[0] {
		t.Fatalf("REGISTER: filter returned %d octets (err %v), want Parse's rewrite", len(out), err)
	}
}

// takeWanted is a Taker that wants every plain datagram and takes all.
type takeWanted struct{ taken []sip.Message }

func (w *takeWanted) Wants(sip.TransportReadProps, []byte) bool { return true }
func (w *takeWanted) Take(_ sip.TransportReadProps, _ []byte, m sip.Message) bool {
	w.taken = append(w.taken, m)
	return true
}

// A plain datagram that the Taker wants is parsed and handed to it, not
// to sipgo.
func TestDatagramFilterWanted(t *testing.T) {
	w := &takeWanted{}
	filter := New().DatagramFilter(nil, w)
	plain := readFile(t, filepath.Join("testdata", "sipp", "invite.sip"))
	out, err := filter(sip.TransportReadProps{Transport: "UDP"}, plain)
	if err != nil || out != nil {
		t.Fatalf("wanted INVITE: filter returned %d octets (err %v), want none", len(out), err)
	}
	if len(w.taken) != 1 || w.taken[0].(*sip.Request).Method != sip.INVITE {
		t.Fatalf("taken %v, want the INVITE", w.taken)
	}
}
