package proxy

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"
)

// TestStaleRequestsDropped queues datagrams on a real socket, then reads
// them as if they had waited 10 s: the requests that open a transaction
// are gone, and responses, ACK, CANCEL and keep-alives come through in
// order; a request that did not wait is read. Each request's wait goes to
// Config.QueueWait's hook.
func TestStaleRequestsDropped(t *testing.T) {
	lc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	stale := newStaleRequests(time.Second, slog.New(slog.NewTextHandler(&logs, nil)))
	var skew atomic.Int64
	stale.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	var waits []time.Duration // the reads are this goroutine's
	stale.waited = func(d time.Duration) { waits = append(waits, d) }
	conn := newRawUDPConn(lc, stale)
	defer conn.Close()
	src, err := net.Dial("udp4", conn.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()

	queued := []struct {
		msg  string
		kept bool
	}{
		{"INVITE sip:bob@example.com SIP/2.0\r\n\r\n", false},
		{"SIP/2.0 180 Ringing\r\n\r\n", true},
		{"REGISTER sip:example.com SIP/2.0\r\n\r\n", false},
		{"ACK sip:bob@example.com SIP/2.0\r\n\r\n", true},
		{"BYE sip:bob@example.com SIP/2.0\r\n\r\n", false},
		{"CANCEL sip:bob@example.com SIP/2.0\r\n\r\n", true},
		{"\r\n\r\n", true},
		{"sip/2.0 200 OK\r\n\r\n", true},
	}
	var want []string
	for _, q := range queued {
		if _, err := src.Write([]byte(q.msg)); err != nil {
			t.Fatal(err)
		}
		if q.kept {
			want = append(want, q.msg)
		}
	}
	skew.Store(int64(10 * time.Second))
	buf := make([]byte, 1500)
	read := func(wait time.Duration) (string, error) {
		conn.SetReadDeadline(time.Now().Add(wait))
		n, _, err := conn.ReadFrom(buf)
		return string(buf[:n]), err
	}
	for _, w := range want {
		got, err := read(5 * time.Second)
		if err != nil || got != w {
			t.Fatalf("read %q, %v; want %q", got, err, w)
		}
	}
	if got, err := read(100 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("after the kept datagrams read %q, %v; want nothing left", got, err)
	}
	if n := stale.dropped.Load(); n != 3 {
		t.Fatalf("%d dropped, want 3", n)
	}
	if len(waits) != 3 || slices.ContainsFunc(waits, func(d time.Duration) bool { return d < 10*time.Second }) {
		t.Fatalf("waits reported %v, want the 3 requests' 10 s and more", waits)
	}
	if !bytes.Contains(logs.Bytes(), []byte("overloaded")) {
		t.Fatalf("no warning logged: %q", logs.String())
	}

	skew.Store(0)
	fresh := "OPTIONS sip:example.com SIP/2.0\r\n\r\n"
	src.Write([]byte(fresh))
	if got, err := read(5 * time.Second); err != nil || got != fresh {
		t.Fatalf("a request that did not wait: read %q, %v", got, err)
	}
	if len(waits) != 4 || waits[3] > time.Second {
		t.Fatalf("waits reported %v, want a fourth under a second", waits)
	}
}

func TestOnceEvery(t *testing.T) {
	o := onceEvery{every: time.Second}
	t0 := time.Unix(1000, 0)
	for _, step := range []struct {
		at   time.Duration
		want bool
	}{{0, true}, {500 * time.Millisecond, false}, {time.Second, true}, {1500 * time.Millisecond, false}, {3 * time.Second, true}} {
		if got := o.due(t0.Add(step.at)); got != step.want {
			t.Fatalf("due at +%v: %v, want %v", step.at, got, step.want)
		}
	}
}
