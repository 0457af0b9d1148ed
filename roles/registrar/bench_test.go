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
// parsing the datagram and serializing the 200.
//
//	go test -run '^$' -bench Register -benchmem ./roles/registrar/
func BenchmarkRegister(b *testing.B) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	r, err := New("example.test", newMemStore(clock), WithClock(clock), WithNodeName("n1"))
	if err != nil {
		b.Fatal(err)
	}
	reqs := make([]*sip.Request, 1000)
	for i := range reqs {
		msg, err := sip.ParseMessage([]byte(fmt.Sprintf("REGISTER sip:example.test SIP/2.0\r\n"+
			"Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK%d;rport=5060;received=192.0.2.1\r\n"+
			"Path: <sip:ft-abc@10.0.0.1;transport=udp;lr>\r\n"+
			"From: <sip:u%d@example.test>;tag=a%d\r\n"+
			"To: <sip:u%d@example.test>\r\n"+
			"Call-ID: c%d@192.0.2.1\r\n"+
			"CSeq: 1 REGISTER\r\n"+
			"Contact: <sip:u%d@192.0.2.1:5060;transport=udp>\r\n"+
			"Expires: 3600\r\nUser-Agent: bench\r\nContent-Length: 0\r\n\r\n", i, i, i, i, i, i)))
		if err != nil {
			b.Fatal(err)
		}
		reqs[i] = msg.(*sip.Request)
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		req := reqs[i%len(reqs)]
		req.CSeq().SeqNo++
		res, err := r.Register(ctx, req, "udp:192.0.2.1:5060")
		if err != nil || res.StatusCode != 200 {
			b.Fatalf("REGISTER: %v %v", res, err)
		}
	}
}
