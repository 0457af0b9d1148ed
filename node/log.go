package node

import (
	"io"
	"log/slog"
)

// NewLogger builds the node's logger from the "log" config section.
func NewLogger(w io.Writer, c LogSection) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
