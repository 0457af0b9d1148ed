package main

import (
	"context"
	"os"
	"runtime/debug"

	"github.com/sipmesh/sipmesh/node"
)

func cmdRun(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlags(env, "run", "--config FILE")
	config := fs.String("config", "", "node configuration file (YAML)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *config == "" {
		return usageErr(env, "run", "--config is required: the node's YAML configuration file")
	}
	cfg, err := node.LoadConfig(*config)
	if err != nil {
		return err
	}
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(defaultGCPercent)
	}
	n, err := node.New(cfg, node.NewLogger(os.Stderr, cfg.Log))
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

// defaultGCPercent is a running node's GOGC unless the environment sets
// one: a SIP node's heap is mostly short-lived garbage per message, and
// collecting at 200% growth instead of 100% cut its CPU per REGISTER by a
// sixth (make bench), while a node with 100,000 bindings stays at about
// 160 MB RSS (DECISIONS.md). GOGC and GOMEMLIMIT work as for any Go program.
const defaultGCPercent = 200
