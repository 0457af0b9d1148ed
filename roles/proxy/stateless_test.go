package proxy

import (
	"cmp"
	"context"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/internal/retry"
)

// countingRegistrar answers 200 after release is closed, counting calls.
type countingRegistrar struct {
	calls, again atomic.Int64
	release      chan struct{}
	status       int // of the answer; 0: 200
}

func (r *countingRegistrar) Register(_ context.Context, req *sip.Request, _ string) (*sip.Response, error) {
	r.calls.Add(1)
	return r.answer(req)
}

// Reregister counts apart: a retransmission the edge recognised.
func (r *countingRegistrar) Reregister(_ context.Context, req *sip.Request, _ string) (*sip.Response, error) {
	r.again.Add(1)
	return r.answer(req)
}

func (r *countingRegistrar) answer(req *sip.Request) (*sip.Response, error) {
	<-r.release
	res := sip.NewResponseFromRequest(req, cmp.Or(r.status, 200), "", nil)
	res.AppendHeader(sip.NewHeader("X-Call", time.Now().Format(time.RFC3339Nano)))
	return res, nil
}

// credentialedRegister starts a proxy with cfg and a registrar that counts
// its calls, and returns a socket on ip with a REGISTER carrying
// credentials to send from it.
func credentialedRegister(t *testing.T, cfg Config, ip string, status int) (*countingRegistrar, net.PacketConn, string, string) {
	t.Helper()
	reg := &countingRegistrar{release: make(chan struct{}), status: status}
	close(reg.release)
	cfg.Registrar = reg
	_, addr, _ := startProxy(t, cfg)
	conn, err := net.ListenPacket("udp", ip+":0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	msg := request("REGISTER", "sip:example.test", "sip:alice@example.test", "Contact: <sip:alice@"+ip+":5060>\r\n",
		`Authorization: Digest username="alice", realm="example.test", nonce="n", uri="sip:example.test", response="00", qop=auth, nc=00000001, cnonce="c"`+"\r\n")
	return reg, conn, addr, msg
}

// A retransmitted REGISTER with credentials reaches the registrar's
// Register once, as a server transaction would have it (RFC 3261
// §17.2.2): with digest nonce counts, verifying it twice would refuse the
// retransmission as a replay. A retransmission of an accepted one, octet
// for octet, goes to Reregister, which does not verify; one that differs
// in any octet is a request of its own, credentials checked; one that was
// refused gets the very same answer.
func TestStatelessRegisterRetransmission(t *testing.T) {
	reg, conn, addr, msg := credentialedRegister(t, Config{}, "127.0.44.3", 0)
	first := roundTrip(t, conn, addr, msg)
	again := roundTrip(t, conn, addr, msg)
	if !strings.HasPrefix(first, "SIP/2.0 200") || !strings.HasPrefix(again, "SIP/2.0 200") {
		t.Fatalf("REGISTER and its retransmission answered:\n%s\n---\n%s", first, again)
	}
	if c, a := reg.calls.Load(), reg.again.Load(); c != 1 || a != 1 {
		t.Fatalf("Register called %d times, Reregister %d; want 1 and 1", c, a)
	}
	// The same transaction's key with other octets (another Contact):
	// not a retransmission.
	forged := strings.Replace(msg, "Contact: <sip:alice@", "Contact: <sip:mallory@", 1)
	if res := roundTrip(t, conn, addr, forged); !strings.HasPrefix(res, "SIP/2.0 200") || reg.calls.Load() != 2 || reg.again.Load() != 1 {
		t.Fatalf("changed REGISTER: %q; Register %d, Reregister %d calls, want 2 and 1", res, reg.calls.Load(), reg.again.Load())
	}
	// Another transaction (new branch and CSeq) is processed.
	if res := roundTrip(t, conn, addr, request("REGISTER", "sip:example.test", "sip:alice@example.test")); !strings.HasPrefix(res, "SIP/2.0 200") || res == first {
		t.Fatalf("new REGISTER: %q", res)
	}
	if n := reg.calls.Load(); n != 3 {
		t.Fatalf("registrar calls: %d, want 3", n)
	}

	refused, conn, addr, msg := credentialedRegister(t, Config{}, "127.0.44.6", 403)
	first = roundTrip(t, conn, addr, msg)
	if again := roundTrip(t, conn, addr, msg); !strings.HasPrefix(first, "SIP/2.0 403") || again != first {
		t.Fatalf("refused REGISTER and its retransmission answered:\n%s\n---\n%s", first, again)
	}
	if c, a := refused.calls.Load(), refused.again.Load(); c != 1 || a != 0 {
		t.Fatalf("refused: Register called %d times, Reregister %d; want 1 and 0", c, a)
	}
}

// A retransmitted REGISTER without credentials is not remembered: it goes
// through the registrar's Register again, whose CSeq check makes the second
// pass change nothing, and gets a 200 of its own.
func TestStatelessRegisterRetransmissionWithoutCredentials(t *testing.T) {
	reg, conn, addr, _ := credentialedRegister(t, Config{}, "127.0.44.8", 0)
	msg := request("REGISTER", "sip:example.test", "sip:alice@example.test", "Contact: <sip:alice@127.0.44.8:5060>\r\n")
	for i := range 2 {
		if res := roundTrip(t, conn, addr, msg); !strings.HasPrefix(res, "SIP/2.0 200") {
			t.Fatalf("copy %d answered %q", i+1, res)
		}
	}
	if c, a := reg.calls.Load(), reg.again.Load(); c != 2 || a != 0 {
		t.Fatalf("Register called %d times, Reregister %d; want 2 and 0", c, a)
	}
}

// A retransmission that arrives while its REGISTER is still being
// processed is absorbed: the registrar sees the REGISTER once, and no
// Reregister follows.
func TestStatelessRegisterRetransmissionWhileProcessed(t *testing.T) {
	reg := &countingRegistrar{release: make(chan struct{})}
	_, addr, _ := startProxy(t, Config{Registrar: reg})
	conn, err := net.ListenPacket("udp", "127.0.44.7:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := request("REGISTER", "sip:example.test", "sip:alice@example.test", "Contact: <sip:alice@127.0.44.7:5060>\r\n",
		`Authorization: Digest username="alice", realm="example.test", nonce="n", uri="sip:example.test", response="00", qop=auth, nc=00000001, cnonce="c"`+"\r\n")
	msg = strings.ReplaceAll(msg, "LOCAL", conn.LocalAddr().String())
	dst, _ := net.ResolveUDPAddr("udp", addr)
	conn.WriteTo([]byte(msg), dst)
	retry.Eventually(t, 5*time.Second, func() error {
		if reg.calls.Load() != 1 {
			return errors.New("the REGISTER has not reached the registrar")
		}
		return nil
	})
	for range 3 {
		conn.WriteTo([]byte(msg), dst)
	}
	time.Sleep(100 * time.Millisecond) // for the retransmissions to be read
	close(reg.release)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 65535)
	if n, _, err := conn.ReadFrom(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
		t.Fatalf("answer: %q, %v", buf[:n], err)
	}
	if c, a := reg.calls.Load(), reg.again.Load(); c != 1 || a != 0 {
		t.Fatalf("Register called %d times, Reregister %d; want 1 and 0", c, a)
	}
}

// Config.TransactionWait bounds how long a REGISTER with credentials is
// remembered: a retransmission after it is processed afresh, as one
// after Timer J would be by a server transaction (RFC 3261 §17.2.2).
func TestStatelessRegisterTransactionWait(t *testing.T) {
	const wait = 200 * time.Millisecond
	reg, conn, addr, msg := credentialedRegister(t, Config{TransactionWait: wait}, "127.0.44.5", 0)
	roundTrip(t, conn, addr, msg)
	if roundTrip(t, conn, addr, msg); reg.calls.Load() != 1 || reg.again.Load() != 1 {
		t.Fatalf("retransmission within the wait: Register %d, Reregister %d calls; want 1 and 1", reg.calls.Load(), reg.again.Load())
	}
	// Entries live between one and two spans (two generations).
	time.Sleep(2*wait + 50*time.Millisecond)
	if roundTrip(t, conn, addr, msg); reg.calls.Load() != 2 || reg.again.Load() != 1 {
		t.Fatalf("retransmission after the wait: Register %d, Reregister %d calls; want it processed afresh", reg.calls.Load(), reg.again.Load())
	}
}

// When the REGISTER queue is full the node answers 503 with Retry-After
// (RFC 3261 §21.5.4) rather than queueing without bound, and says so in
// its log.
func TestStatelessRegisterSheds(t *testing.T) {
	reg := &countingRegistrar{release: make(chan struct{})}
	_, addr, logs := startProxy(t, Config{Registrar: reg, RegisterQueue: 8})
	defer close(reg.release)
	conn, err := net.ListenPacket("udp", "127.0.44.4:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst, _ := net.ResolveUDPAddr("udp", addr)
	got := make(chan string, 1)
	go func() {
		buf := make([]byte, 65535)
		for {
			n, _, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			if s := string(buf[:n]); strings.HasPrefix(s, "SIP/2.0 503") {
				got <- s
				return
			}
		}
	}()
	// 64 workers hold a REGISTER each and 8 wait: the next ones are shed.
	for i := 0; i < 4*(8+registerWorkers); i++ {
		msg := strings.ReplaceAll(request("REGISTER", "sip:example.test", "sip:alice@example.test"), "LOCAL", conn.LocalAddr().String())
		msg = strings.Replace(msg, "CSeq: 1 ", "CSeq: "+strconv.Itoa(i+1)+" ", 1) // a distinct transaction each
		conn.WriteTo([]byte(msg), dst)
		time.Sleep(time.Millisecond) // no loss in the socket buffers
	}
	select {
	case res := <-got:
		if !strings.Contains(res, "Retry-After:") {
			t.Fatalf("503 without Retry-After:\n%s", res)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no 503 after flooding the queue; the registrar holds %d requests", reg.calls.Load())
	}
	retry.Eventually(t, 5*time.Second, func() error {
		if !strings.Contains(logs.String(), "REGISTER queue full") {
			return errors.New("shedding not logged")
		}
		return nil
	})
}

// A REGISTER that waited in the workers' queue longer than QueueDelay is
// dropped when a worker reaches it, not processed for a client that has
// retransmitted or given up (stale.go: late), and the drop is logged.
func TestStatelessRegisterDropsLateOnes(t *testing.T) {
	reg := &countingRegistrar{release: make(chan struct{})}
	_, addr, logs := startProxy(t, Config{Registrar: reg, QueueDelay: 50 * time.Millisecond})
	conn, err := net.ListenPacket("udp", "127.0.44.5:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst, _ := net.ResolveUDPAddr("udp", addr)
	const queued = 5
	// Every worker holds one; the next ones wait in the queue.
	for i := range registerWorkers + queued {
		msg := strings.ReplaceAll(request("REGISTER", "sip:example.test", "sip:alice@example.test"), "LOCAL", conn.LocalAddr().String())
		msg = strings.Replace(msg, "CSeq: 1 ", "CSeq: "+strconv.Itoa(i+1)+" ", 1)
		conn.WriteTo([]byte(msg), dst)
		time.Sleep(time.Millisecond)
	}
	retry.Eventually(t, 5*time.Second, func() error {
		if n := reg.calls.Load(); n != registerWorkers {
			return errors.New("workers not all busy: " + strconv.FormatInt(n, 10))
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond) // the queued ones are now late
	close(reg.release)
	answered := 0
	buf := make([]byte, 65535)
	conn.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			break
		}
		if strings.HasPrefix(string(buf[:n]), "SIP/2.0 200") {
			answered++
		}
	}
	if answered != registerWorkers || reg.calls.Load() != registerWorkers {
		t.Fatalf("%d answered, %d processed; want the %d the workers held, and none of the %d late ones", answered, reg.calls.Load(), registerWorkers, queued)
	}
	if !strings.Contains(logs.String(), "waited too long in the REGISTER queue") {
		t.Fatalf("late REGISTERs dropped without a log line:\n%s", logs.String())
	}
}
