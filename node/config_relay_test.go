package node

import (
	"strings"
	"testing"
	"time"
)

// The relay keys of issue #6: mode, timeouts and capacity are read, and bad
// values stop the node with a message naming the key.
func TestRelayConfigKeys(t *testing.T) {
	base := "node: {address: 127.0.0.11}\ntls: {ca: ca.crt, cert: n1.crt, key: n1.key}\n"
	cases := []struct {
		relay, err string
		check      func(*Config) bool
	}{
		{"relay: {}", "", func(c *Config) bool { i, s := c.Relay.Timeouts(); return c.Relay.Mode == "" && i == 0 && s == 0 }},
		{`relay: {mode: nat, timeout: 30s, setup_timeout: 2m, max_sessions: 500, ports: "40000-40999"}`, "", func(c *Config) bool {
			i, s := c.Relay.Timeouts()
			return c.Relay.Mode == "nat" && i == 30*time.Second && s == 2*time.Minute && c.Relay.MaxSessions == 500
		}},
		{`relay: {mode: never}`, "", func(c *Config) bool { return c.Relay.Mode == "never" }},
		{`relay: {mode: sometimes}`, `key "relay.mode"`, nil},
		{`relay: {timeout: 60}`, `key "relay.timeout"`, nil},
		{`relay: {setup_timeout: -5m}`, `key "relay.setup_timeout"`, nil},
		{`relay: {max_sessions: -1}`, `key "relay.max_sessions"`, nil},
	}
	for _, c := range cases {
		cfg, err := ParseConfig([]byte(base+c.relay), t.TempDir())
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: err = %v, want one naming %s", c.relay, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %v", c.relay, err)
		case c.err == "" && !c.check(cfg):
			t.Errorf("%s: read as %+v", c.relay, cfg.Relay)
		}
	}
}
