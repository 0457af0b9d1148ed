package main

import (
	"context"
	"os"

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
	n, err := node.New(cfg, node.NewLogger(os.Stderr, cfg.Log))
	if err != nil {
		return err
	}
	return n.Run(ctx)
}
