package proxy

import (
	"log/slog"
	"sync"
	"time"
)

// pike limits the messages accepted per source IP (a token bucket per
// address, like Kamailio's pike module): a flood from one address is
// dropped before it is parsed, and logged once a minute per address.
// Mesh peers are not limited.
type pike struct {
	rate  float64 // tokens per second
	burst float64
	now   func() time.Time
	log   *slog.Logger

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped int
	logged  time.Time
}

func newPike(rate float64, burst int, log *slog.Logger) *pike {
	if burst < 1 {
		burst = int(rate * 2)
	}
	return &pike{rate: rate, burst: float64(max(burst, 1)), now: time.Now, log: log, buckets: map[string]*bucket{}}
}

// allow takes a token for ip.
func (p *pike) allow(ip string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if now.Sub(p.lastSweep) > time.Minute {
		for k, b := range p.buckets {
			if now.Sub(b.last) > time.Minute {
				delete(p.buckets, k)
			}
		}
		p.lastSweep = now
	}
	b, ok := p.buckets[ip]
	if !ok {
		b = &bucket{tokens: p.burst, last: now}
		p.buckets[ip] = b
	}
	b.tokens = min(p.burst, b.tokens+now.Sub(b.last).Seconds()*p.rate)
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return true
	}
	b.dropped++
	if now.Sub(b.logged) >= time.Minute {
		p.log.Warn("proxy: source exceeds the per-source rate limit; dropping its messages (raise sip rate limit if this is a legitimate server)",
			"source", ip, "limit_per_s", p.rate, "burst", p.burst, "dropped_since_last_report", b.dropped)
		b.logged, b.dropped = now, 0
	}
	return false
}
