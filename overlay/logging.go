package overlay

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
)

// refusals logs and counts every refused peer. Logs are limited to one per
// (reason, peer, remote host) and window, because a refused peer retries on
// every probe and gossip round; the counter sees every refusal.
type refusals struct {
	log    *slog.Logger
	m      *metrics
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	last map[string]time.Time
}

func newRefusals(log *slog.Logger, m *metrics, window time.Duration) *refusals {
	return &refusals{log: log, m: m, window: window, now: time.Now, last: map[string]time.Time{}}
}

// refuse records one refusal. peer is what the peer claims to be, remote its
// address, stage where it was refused.
func (r *refusals) refuse(reason, peer, remote, stage string, err error) {
	r.m.refusals.WithLabelValues(reason).Inc()
	host := remote
	if h, _, splitErr := net.SplitHostPort(remote); splitErr == nil {
		host = h
	}
	key := reason + "\x00" + peer + "\x00" + host
	now := r.now()
	r.mu.Lock()
	if t, ok := r.last[key]; ok && now.Sub(t) < r.window {
		r.mu.Unlock()
		return
	}
	if len(r.last) > 4096 { // bounded under a flood of distinct peers
		for k, t := range r.last {
			if now.Sub(t) >= r.window {
				delete(r.last, k)
			}
		}
	}
	r.last[key] = now
	r.mu.Unlock()
	r.log.Warn("overlay: refused peer", "reason", reason, "peer", peer, "remote", remote, "stage", stage, "err", err)
}

// mlLogWriter turns memberlist's "[LEVEL] memberlist: text" lines into slog
// records.
type mlLogWriter struct{ log *slog.Logger }

func (w mlLogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	level := slog.LevelInfo
	for _, l := range []struct {
		prefix string
		level  slog.Level
	}{
		{"[DEBUG]", slog.LevelDebug},
		{"[INFO]", slog.LevelInfo},
		{"[WARN]", slog.LevelWarn},
		{"[ERR]", slog.LevelError},
		{"[ERROR]", slog.LevelError},
	} {
		if rest, ok := strings.CutPrefix(line, l.prefix); ok {
			line, level = strings.TrimSpace(rest), l.level
			break
		}
	}
	if !strings.HasPrefix(line, "memberlist:") {
		line = "memberlist: " + line
	}
	w.log.Log(context.Background(), level, line)
	return len(p), nil
}

// refusedBy records that a peer refused this node's certificate: the peer
// logs and counts the refusal; here it is only said, as rarely as refusals.
func (r *refusals) refusedBy(peer, remote string, err error) {
	key := "refused-by\x00" + peer + "\x00" + remote
	now := r.now()
	r.mu.Lock()
	if t, ok := r.last[key]; ok && now.Sub(t) < r.window {
		r.mu.Unlock()
		return
	}
	r.last[key] = now
	r.mu.Unlock()
	r.log.Warn("overlay: a peer refused this node's certificate (revoked, expired or not of its cluster?)", "peer", peer, "remote", remote, "err", err)
}
