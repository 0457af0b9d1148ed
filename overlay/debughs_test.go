package overlay

import (
	"testing"
	"time"
)

func BenchmarkDebugHandshake(b *testing.B) {
	ca := newTestCA(b, "example.test")
	var la, lb logBuf
	a := newTestTransportB(b, ca, "a", &la)
	bb := newTestTransportB(b, ca, "b", &lb)
	go func() {
		for c := range bb.StreamCh() {
			c.Close()
		}
	}()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c, err := a.dial(bb.advAddr, "b", kindStream, 5*time.Second)
		if err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}

func newTestTransportB(b *testing.B, ca *testCA, name string, log *logBuf) *transport {
	met, _ := newMetrics(nil)
	tr, err := newTransport(transportConfig{Material: ca.material(name, "dc1"), BindAddr: "127.0.0.1", Logger: log.logger(), Metrics: met})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tr.Shutdown() })
	return tr
}
