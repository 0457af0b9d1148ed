package main

import (
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
)

// optionsAnswer sends an OPTIONS for the Call-ID from conn to dst and
// returns the To tag of its final answer, skipping others' answers.
func optionsAnswer(conn net.PacketConn, dst *net.UDPAddr, callID string, wait time.Duration) (string, error) {
	local := conn.LocalAddr().String()
	msg := "OPTIONS sip:" + dst.IP.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.test>;tag=1\r\nTo: <sip:" + dst.IP.String() + ">\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	if _, err := conn.WriteTo([]byte(msg), dst); err != nil {
		return "", err
	}
	buf := make([]byte, 65535)
	conn.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return "", err
		}
		res := string(buf[:n])
		if strings.HasPrefix(res, "SIP/2.0 1") || !strings.Contains(res, "\r\nCall-ID: "+callID+"\r\n") {
			continue
		}
		for _, l := range strings.Split(res, "\r\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, "To") {
				if _, tag, ok := strings.Cut(v, ";tag="); ok {
					return tag, nil
				}
			}
		}
		return "", errors.New("answer without a To tag:\n" + res)
	}
}

// sip.transaction_wait sets how long the node's finished transactions
// absorb retransmissions (RFC 3261 §17.2.2 Timer J): within it a
// retransmitted OPTIONS gets the very answer it got (same To tag); after
// it, the request is a new transaction with a new tag.
func TestTransactionWait(t *testing.T) {
	c := proctest.NewCluster(t, "example.test", "127.0.36.")
	ip := c.NextIP()
	c.IssueNode("n1", certs.IssueRequest{})
	c.Start("n1", ip, c.WriteConfig("n1", ip, proctest.DefaultConfig("n1", nil, `sip: {listen: ["udp://%IP%:5060"], transaction_wait: 1}`)))
	conn, err := net.ListenPacket("udp", "127.0.36.200:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	dst := &net.UDPAddr{IP: net.ParseIP(ip), Port: 5060}
	proctest.Eventually(t, 10*time.Second, "the node answers OPTIONS", func() error {
		_, err := optionsAnswer(conn, dst, "wait-probe", 200*time.Millisecond)
		return err
	})
	ask := func() string {
		t.Helper()
		tag, err := optionsAnswer(conn, dst, "wait-e2e", 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return tag
	}
	first := ask()
	time.Sleep(300 * time.Millisecond)
	if again := ask(); again != first {
		t.Fatalf("retransmission within the wait got To tag %q, want %q from the transaction", again, first)
	}
	// 1 s after the answer the transaction is gone; allow for timer slack.
	time.Sleep(2 * time.Second)
	if late := ask(); late == first {
		t.Fatalf("retransmission 2.3 s later still absorbed (To tag %q): transaction_wait 1 not applied", late)
	}
}
