package node

import (
	"log"
	"log/slog"
	"strings"
)

// slogErrorLog routes net/http's internal messages (TLS handshake errors)
// into the node's logger at debug level: the refusals that matter are
// already logged with their reason by the TLS verifier.
func slogErrorLog(l *slog.Logger) *log.Logger {
	return log.New(writerFunc(func(p []byte) (int, error) {
		l.Debug("admin: http", "msg", strings.TrimSpace(string(p)))
		return len(p), nil
	}), "", 0)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
