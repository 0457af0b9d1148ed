package presence_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func decodeKind(v []byte, kind string, into any) bool {
	var k struct {
		Kind string `json:"kind"`
	}
	if json.Unmarshal(v, &k) != nil || k.Kind != kind {
		return false
	}
	return json.Unmarshal(v, into) == nil
}

type ctxT = context.Context

type atomicBool = atomic.Bool

func ctxTimeout(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// testLogger logs through t at debug level.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}
