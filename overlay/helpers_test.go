package overlay

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"

	"github.com/sipmesh/sipmesh/certs"
)

// logBuf is a goroutine-safe log sink.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// logger returns a logger writing to buf and, with -v, to the test log.
func (l *logBuf) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// testCA is a cluster CA in a temporary directory.
type testCA struct {
	t   testing.TB
	dir string
	ca  *certs.CA
}

func newTestCA(t testing.TB, cluster string) *testCA {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ca-"+cluster)
	ca, err := certs.InitCA(dir, cluster, "")
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{t: t, dir: dir, ca: ca}
}

func (c *testCA) caPath() string  { return filepath.Join(c.dir, certs.CACertFile) }
func (c *testCA) crlPath() string { return filepath.Join(c.dir, certs.CRLFile) }

// issue writes a certificate for req into the CA's folder and returns the
// certificate and key paths.
func (c *testCA) issue(req certs.IssueRequest) (string, string) {
	c.t.Helper()
	is, err := c.ca.Issue(req)
	if err != nil {
		c.t.Fatal(err)
	}
	cp, kp, err := is.WriteFiles(filepath.Join(c.dir, "issued"), req.Name)
	if err != nil {
		c.t.Fatal(err)
	}
	return cp, kp
}

// material issues a node certificate and loads it with the CA's CRL.
func (c *testCA) material(name, dc string, roles ...string) *certs.Material {
	c.t.Helper()
	cp, kp := c.issue(certs.IssueRequest{Name: name, Datacenter: dc, Roles: roles})
	m, err := certs.Load(c.caPath(), cp, kp, c.crlPath())
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// bundle writes a file with the certificates of several CAs.
func bundle(t testing.TB, cas ...*testCA) string {
	t.Helper()
	var b []byte
	for _, c := range cas {
		data, err := os.ReadFile(c.caPath())
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, data...)
	}
	p := filepath.Join(t.TempDir(), "bundle.crt")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// fastTune shortens memberlist's timers for tests that do not measure
// failure detection; the probe timeout stays generous for a loaded machine.
func fastTune(c *memberlist.Config) {
	c.GossipInterval = 50 * time.Millisecond
	c.PushPullInterval = 2 * time.Second
	c.TCPTimeout = 5 * time.Second
}

// testConfig is a loopback config with an ephemeral port.
func testConfig(m *certs.Material, log *logBuf) Config {
	cfg := DefaultConfig()
	cfg.Material = m
	cfg.BindAddr = "127.0.0.1"
	cfg.Port = 0
	cfg.Logger = log.logger()
	cfg.Tune = fastTune
	return cfg
}

// start creates an Overlay that is shut down when the test ends.
func start(t testing.TB, cfg Config) *Overlay {
	t.Helper()
	o, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = o.Shutdown() })
	return o
}

// aliveNames lists the members o sees alive.
func aliveNames(o *Overlay) []string {
	var out []string
	for _, m := range o.Members() {
		if m.State == StateAlive {
			out = append(out, m.Name)
		}
	}
	return out
}

// seesAlive reports an error unless o sees exactly names alive.
func seesAlive(o *Overlay, names ...string) error {
	got := aliveNames(o)
	want := slices.Sorted(slices.Values(names))
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s sees alive %v, want %v", o.Name(), got, want)
	}
	return nil
}

func known(o *Overlay, name string) bool {
	_, ok := o.Member(name)
	return ok
}

func mustContain(t testing.TB, log, what string, parts ...string) {
	t.Helper()
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(line, p)
		}
		if ok {
			return
		}
	}
	t.Fatalf("%s: no log line contains all of %q; log:\n%s", what, parts, log)
}
