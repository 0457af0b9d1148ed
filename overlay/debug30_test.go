package overlay

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"testing"
	"time"
)

func TestDebug30(t *testing.T) {
	ca := newTestCA(t, "example.test")
	n := 30
	var nodes []*Overlay
	h := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	for i := 0; i < n; i++ {
		cfg := DefaultConfig()
		cfg.Material = ca.material(fmt.Sprintf("n%02d", i+1), "dc1")
		cfg.BindAddr = "127.0.0.1"
		cfg.Port = 0
		cfg.Logger = h.With("node", i+1)
		o, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Shutdown()
		nodes = append(nodes, o)
	}
	for _, o := range nodes[1:] {
		go o.Join([]string{nodes[0].GossipAddr()})
	}
	for s := 0; s < 20; s++ {
		time.Sleep(time.Second)
		var counts []int
		for _, o := range nodes {
			counts = append(counts, len(aliveNames(o)))
		}
		for _, o := range nodes {
			if len(aliveNames(o)) != n && s > 3 {
				for _, m := range o.Members() {
					if m.State != StateAlive {
						t.Logf("%s sees %s %s", o.Name(), m.Name, m.State)
					}
				}
				if len(o.Members()) != n {
					t.Logf("%s knows only %d", o.Name(), len(o.Members()))
				}
			}
		}
		var ru syscall.Rusage
		syscall.Getrusage(0, &ru)
		t.Logf("%ds: %v conns0=%d cpu=%v", s+1, counts, nodes[0].tr.openConns(), time.Duration(ru.Utime.Nano()+ru.Stime.Nano()))
	}
}
