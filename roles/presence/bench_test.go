package presence_test

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/roles/presence"
)

var seqRE = regexp.MustCompile(`<note>s(\d+)</note>`)

// BenchmarkPublish10Watchers: 3 nodes (store R=2, W=2), 20 presentities
// with 10 watchers each, everything (nodes, watchers, publishers) in this
// process. Publishers modify their publication in a loop (PUBLISH through
// a non-owner node, handed to the owner; NOTIFYs go back through the
// entry node's Record-Route). "publishers=20": one per presentity at
// once (throughput); "publishers=1": one PUBLISH at a time (latency
// without queueing). Reports PUBLISH/s, the latency from sending the
// PUBLISH to the NOTIFY carrying it at a watcher (p50, p99), and the
// share of NOTIFYs coalesced away (a newer state sent instead, RFC 6665
// §4.2.2).
func BenchmarkPublish10Watchers(b *testing.B) {
	for _, p := range []int{20, 1} {
		b.Run(fmt.Sprintf("publishers=%d", p), func(b *testing.B) { benchPublish(b, p) })
	}
}

func benchPublish(b *testing.B, publishers int) {
	const presentities, watchers = 20, 10
	c := newCluster(b, 3)
	var (
		mu       sync.Mutex
		sent     = map[int]time.Time{}
		lat      []time.Duration
		received int
	)
	hook := func(req *sip.Request) {
		now := time.Now()
		m := seqRE.FindSubmatch(req.Body())
		if m == nil {
			return
		}
		n, _ := strconv.Atoi(string(m[1]))
		mu.Lock()
		if t, ok := sent[n]; ok {
			lat = append(lat, now.Sub(t))
			received++
		}
		mu.Unlock()
	}
	pubs := make([]*ua, presentities)
	etags := make([]string, presentities)
	for i := range pubs {
		pubs[i] = newUA(b, fmt.Sprintf("pres%02d", i))
		key := pubs[i].aor()
		res := pubs[i].publish(c.other(c.owner(key)).sipAddr, "", 3600, pidf(key, "t=open"))
		etags[i] = header(res, "SIP-ETag")
	}
	for w := range watchers {
		for i := range pubs {
			u := newUA(b, fmt.Sprintf("w%02d", w))
			if res := u.subscribe(c.other(c.owner(pubs[i].aor())).sipAddr, pubs[i].aor(), 3600); res.StatusCode != 200 {
				b.Fatalf("SUBSCRIBE: %d", res.StatusCode)
			}
			u.next(wait)
			u.hook.Store(&hook)
		}
	}
	var seq sync.Mutex
	next := 0
	turn := make(chan struct{}, publishers) // PUBLISHes in flight

	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	per := (b.N + presentities - 1) / presentities
	for i := range pubs {
		wg.Go(func() {
			key := pubs[i].aor()
			via := c.other(c.owner(key)).sipAddr
			for range per {
				seq.Lock()
				n := next
				next++
				seq.Unlock()
				body := pidf(key, "t=open")
				body = body[:len(body)-len("</tuple></presence>")] + fmt.Sprintf("<note>s%d</note></tuple></presence>", n)
				turn <- struct{}{}
				mu.Lock()
				sent[n] = time.Now()
				mu.Unlock()
				res := pubs[i].publish(via, etags[i], 3600, body)
				<-turn
				if res.StatusCode != 200 {
					b.Errorf("PUBLISH: %d", res.StatusCode)
					return
				}
				etags[i] = header(res, "SIP-ETag")
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	time.Sleep(time.Second) // the last NOTIFYs
	b.StopTimer()
	mu.Lock()
	defer mu.Unlock()
	total := next
	slices.Sort(lat)
	if len(lat) == 0 {
		b.Fatal("no NOTIFY received")
	}
	b.ReportMetric(float64(total)/elapsed.Seconds(), "publish/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(100*(1-float64(received)/float64(total*watchers)), "coalesced-%")
	_ = presence.EventPresence
}
