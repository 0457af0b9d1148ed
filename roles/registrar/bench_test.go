package registrar

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"
)

// BenchmarkRegister is the registrar's own cost of one REGISTER refresh
// (one contact, a Path, as the edge adds it), over 1,000 AORs, with the
// test's in-memory store: what the stateless REGISTER path spends between
// parsing the datagram and serializing the 200. With bindings=10, each
// AOR has nine other contacts, all listed in the 200 (as after a UA
// re-registered from nine other ports, or an AOR with ten devices).
//
//	go test -run '^$' -bench Register -benchmem ./roles/registrar/
func BenchmarkRegister(b *testing.B) {
	for _, bindings := range []int{1, 10} {
		b.Run(fmt.Sprintf("bindings=%d", bindings), func(b *testing.B) { benchmarkRegister(b, bindings) })
	}
}

func benchmarkRegister(b *testing.B, bindings int) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	r, err := New("example.test", newMemStore(clock), WithClock(clock), WithNodeName("n1"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	register := func(i, port int) *sip.Request {
		msg, err := sip.ParseMessage([]byte(fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 192.0.2.1:%d;branch=z9hG4bK%d;rport=5060;received=192.0.2.1\r\n"+
			"Path: <sip:ft-abc@10.0.0.1;transport=udp;lr>\r\n"+
			"From: <sip:u%d@example.test>;tag=a%d\r\n"+
			"To: <sip:u%d@example.test>\r\n"+
			"Call-ID: c%d-%d@192.0.2.1\r\n"+
			"CSeq: 1 REGISTER\r\n"+
			"Contact: <sip:u%d@192.0.2.1:%d;transport=udp>\r\n"+
			"Expires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n", port, i, i, i, i, i, port, i, port)))
		if err != nil {
			b.Fatal(err)
		}
		// As the proxy's stateless path hands it over.
		req := msg.(*sip.Request)
		req.SetTransport("UDP")
		req.SetSource(fmt.Sprintf("192.0.2.1:%d", port))
		return req
	}
	reqs := make([]*sip.Request, 1000)
	for i := range reqs {
		for port := 5061; port < 5060+bindings; port++ {
			if _, err := r.Register(ctx, register(i, port), "udp:192.0.2.1:5060"); err != nil {
				b.Fatal(err)
			}
		}
		reqs[i] = register(i, 5060)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := reqs[i%len(reqs)]
		req.CSeq().SeqNo++
		res, err := r.Register(ctx, req, "udp:192.0.2.1:5060")
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("REGISTER: %v %v", res, err)
		}
		if i >= len(reqs) {
			continue // the 200 is checked once per AOR: not the cost measured
		}
		if n := countContacts(res); n != bindings {
			b.Fatalf("200 lists %d contacts, want %d", n, bindings)
		}
	}
}

func countContacts(res *sip.Response) int {
	n := 0
	for _, h := range res.Headers() {
		if h.Name() == "Contact" {
			n += len(SplitList(h.Value()))
		}
	}
	return n
}
