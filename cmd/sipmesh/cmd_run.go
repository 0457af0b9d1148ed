package main

import (
	"context"
	"os"
	"runtime/debug"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/internal/procs"
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
	if w := cfg.SIP.TransactionWait; w > 0 {
		setTransactionWait(time.Duration(w) * time.Second)
	}
	log := node.NewLogger(os.Stderr, cfg.Log)
	n, err := node.New(cfg, log)
	if err != nil {
		return err
	}
	if os.Getenv("SIPMESH_ADAPTIVE_PROCS") != "0" {
		pc := procs.DefaultConfig()
		pc.Logger = log
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		go procs.Run(ctx, pc)
	}
	return n.Run(ctx)
}

// defaultGCPercent is a running node's GOGC unless the environment sets
// one: a SIP node's heap is mostly short-lived garbage per message, and
// collecting at 200% growth instead of 100% cut its CPU per REGISTER by a
// sixth (make bench), while a node with 100,000 bindings stays at about
// 160 MB RSS (DECISIONS.md). GOGC and GOMEMLIMIT work as for any Go program.
const defaultGCPercent = 200

// setTransactionWait sets how long sipgo keeps finished transactions to
// absorb retransmissions: Timer J (non-INVITE server), L and M (INVITE
// after a 2xx, RFC 6026) and D (INVITE client after an error). They are
// sipgo's package variables, so only the process sets them, before any
// transaction exists; tests running several nodes in one process keep the
// RFC values.
func setTransactionWait(d time.Duration) {
	sip.Timer_D, sip.Timer_J, sip.Timer_L, sip.Timer_M = d, d, d, d
}
