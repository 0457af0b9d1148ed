package node

import (
	"slices"
	"strings"
	"testing"

	"github.com/sipmesh/sipmesh/roles/digest"
)

// The SIP keys (issue #4's sip.relay_foreign and sip.flow_timer,
// sip.transaction_wait, sip.digest_algorithms) are read,
// and bad values stop the node with a message naming the key.
func TestSIPConfigKeys(t *testing.T) {
	base := "node: {address: 127.0.0.11}\ntls: {ca: ca.crt, cert: n1.crt, key: n1.key}\n"
	cases := []struct {
		sip, err string
		check    func(*Config) bool
	}{
		{"sip: {}", "", func(c *Config) bool { return len(c.SIP.RelayForeign) == 0 && c.SIP.FlowTimer == 0 }},
		{`sip: {relay_foreign: ["partner.example", "*.Carrier.example.", "*", "192.0.2.7"], flow_timer: 60}`, "",
			func(c *Config) bool { return len(c.SIP.RelayForeign) == 4 && c.SIP.FlowTimer == 60 }},
		{`sip: {relay_foreign: ["bad domain"]}`, `key "sip.relay_foreign[0]"`, nil},
		{`sip: {relay_foreign: ["ok.example", "*bad.example"]}`, `key "sip.relay_foreign[1]"`, nil},
		{`sip: {relay_foreign: true}`, `key "sip.relay_foreign"`, nil},
		{`sip: {flow_timer: -1}`, `key "sip.flow_timer"`, nil},
		{`sip: {flow_timer: 7200}`, `key "sip.flow_timer"`, nil},
		{`sip: {transaction_wait: 5}`, "", func(c *Config) bool { return c.SIP.TransactionWait == 5 }},
		{`sip: {transaction_wait: -1}`, `key "sip.transaction_wait"`, nil},
		{`sip: {transaction_wait: 33}`, `key "sip.transaction_wait"`, nil},
		{`sip: {digest_algorithms: [md5]}`, "", func(c *Config) bool { return slices.Equal(c.SIP.DigestAlgorithms, []digest.Algorithm{digest.MD5}) }},
		{`sip: {digest_algorithms: [sha-256, MD5]}`, "", func(c *Config) bool {
			return slices.Equal(c.SIP.DigestAlgorithms, []digest.Algorithm{digest.SHA256, digest.MD5})
		}},
		{`sip: {digest_algorithms: [MD5, SHA-512]}`, `key "sip.digest_algorithms[1]"`, nil},
		{`sip: {digest_algorithms: [""]}`, `key "sip.digest_algorithms[0]"`, nil},
		{`sip: {digest_algorithms: [MD5, md5]}`, `key "sip.digest_algorithms[1]"`, nil},
	}
	for _, c := range cases {
		cfg, err := ParseConfig([]byte(base+c.sip), t.TempDir())
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: err = %v, want one naming %s", c.sip, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.sip, err)
		case c.err == "" && !c.check(cfg):
			t.Errorf("%s: read as %+v", c.sip, cfg.SIP)
		}
	}
}
