package main

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sipmesh/sipmesh/certs"
	"github.com/sipmesh/sipmesh/internal/proctest"
)

// optionsAnswer sends an OPTIONS for the Call-ID from conn to dst and
// returns the To tag of its final answer.
func optionsAnswer(conn net.PacketConn, dst *net.UDPAddr, callID string, wait time.Duration) (string, error) {
	local := conn.LocalAddr().String()
	msg := "OPTIONS sip:" + dst.IP.String() + " SIP/2.0\r\n" +
		"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + ";rport\r\n" +
		"Max-Forwards: 70\r\nFrom: <sip:probe@example.test>;tag=1\r\nTo: <sip:" + dst.IP.String() + ">\r\n" +
		"Call-ID: " + callID + "\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
	res, err := finalAnswer(conn, dst, msg, callID, wait)
	if err != nil {
		return "", err
	}
	for _, v := range headerValues(res, "To") {
		if _, tag, ok := strings.Cut(v, ";tag="); ok {
			return tag, nil
		}
	}
	return "", errors.New("answer without a To tag:\n" + res)
}

// finalAnswer sends msg from conn to dst and returns the final response
// for its Call-ID, skipping provisional ones and others' answers.
func finalAnswer(conn net.PacketConn, dst *net.UDPAddr, msg, callID string, wait time.Duration) (string, error) {
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
		if !strings.HasPrefix(res, "SIP/2.0 1") && strings.Contains(res, "\r\nCall-ID: "+callID+"\r\n") {
			return res, nil
		}
	}
}

// headerValues returns the values of res's header fields named name.
func headerValues(res, name string) []string {
	var vs []string
	for _, l := range strings.Split(res, "\r\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.EqualFold(k, name) {
			vs = append(vs, v)
		}
	}
	return vs
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

// sip.digest_algorithms sets the challenges a 401 offers, one
// WWW-Authenticate each in the order given (RFC 8760 §2.4); without it,
// MD5 then SHA-256.
func TestDigestAlgorithms(t *testing.T) {
	c := proctest.NewCluster(t, "example.test", "127.0.37.")
	users := "users:\n  - {user: alice, domain: example.test, password: alice-pw}\n"
	if err := os.WriteFile(filepath.Join(c.Dir, "users.yaml"), []byte(users), 0o644); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenPacket("udp", "127.0.37.200:0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, tc := range []struct {
		name, key string
		want      []string // the algorithms offered, in order
	}{
		{"n1", "", []string{"MD5", "SHA-256"}},
		{"n2", ", digest_algorithms: [sha-256]", []string{"SHA-256"}},
	} {
		ip := c.NextIP()
		c.IssueNode(tc.name, certs.IssueRequest{})
		c.Start(tc.name, ip, c.WriteConfig(tc.name, ip, proctest.DefaultConfig(tc.name, nil,
			`sip: {listen: ["udp://%IP%:5060"], users: users.yaml`+tc.key+`}`)))
		dst := &net.UDPAddr{IP: net.ParseIP(ip), Port: 5060}
		var got []string
		proctest.Eventually(t, 10*time.Second, tc.name+" challenges a REGISTER", func() error {
			local := conn.LocalAddr().String()
			callID := "alg-" + tc.name
			msg := "REGISTER sip:example.test SIP/2.0\r\n" +
				"Via: SIP/2.0/UDP " + local + ";branch=z9hG4bK-" + callID + "-" + strconv.FormatInt(time.Now().UnixNano(), 36) + ";rport\r\n" +
				"Max-Forwards: 70\r\nFrom: <sip:alice@example.test>;tag=1\r\nTo: <sip:alice@example.test>\r\n" +
				"Call-ID: " + callID + "\r\nCSeq: 1 REGISTER\r\nContact: <sip:alice@" + local + ">\r\nContent-Length: 0\r\n\r\n"
			res, err := finalAnswer(conn, dst, msg, callID, 300*time.Millisecond)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(res, "SIP/2.0 401 ") {
				return errors.New("not a 401:\n" + res)
			}
			got = nil
			for _, v := range headerValues(res, "WWW-Authenticate") {
				_, alg, _ := strings.Cut(v, "algorithm=")
				alg, _, _ = strings.Cut(alg, ",")
				got = append(got, strings.TrimSpace(alg))
			}
			return nil
		})
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s%s: challenges offer %q, want %q", tc.name, tc.key, got, tc.want)
		}
	}
}
