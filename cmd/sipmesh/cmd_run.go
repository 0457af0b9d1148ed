package main

import (
	"context"
	"os"
	"time"

	"github.com/emiago/sipgo/sip"

	"github.com/sipmesh/sipmesh/internal/gcgoal"
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
	if w := cfg.SIP.TransactionWait; w > 0 {
		setTransactionWait(time.Duration(w) * time.Second)
	}
	// Timers L and M keep an INVITE's server and client transactions after
	// a 2xx (RFC 6026 §8.7, §8.4). The proxy ends both once the 2xx is
	// relayed: it absorbs the INVITE's retransmissions itself, from a set
	// of keys (proxy/accepted.go), and forwards the 2xx's statelessly
	// (proxy.strayResponse). sipgo's Terminate does not stop these two
	// timers, though, and their callbacks would hold each ended
	// transaction, with its parsed requests and responses, for the wait,
	// and every collection marked them again: at 1,600 calls/s and a 5 s
	// wait the live heap was 78 MB, 62 MB with M at zero and 5 MB with
	// both. Zero lets them go.
	sip.Timer_L, sip.Timer_M = 0, 0
	log := node.NewLogger(os.Stderr, cfg.Log)
	var opts []node.Option
	var governor *procs.Governor
	if os.Getenv("SIPMESH_ADAPTIVE_PROCS") != "0" {
		pc := procs.DefaultConfig()
		pc.Logger = log
		governor = procs.New(pc)
		opts = append(opts, node.WithQueueWait(governor.Behind))
	}
	n, err := node.New(cfg, log, opts...)
	if err != nil {
		return err
	}
	ctx, stop := context.WithCancel(ctx)
	defer stop()
	if governor != nil {
		go governor.Run(ctx)
	}
	// GOGC or GOMEMLIMIT in the environment: the operator paces the
	// collector, as for any Go program.
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		gc := gcgoal.DefaultConfig()
		gc.Logger = log
		go gcgoal.Run(ctx, gc)
	}
	return n.Run(ctx)
}

// setTransactionWait sets how long sipgo keeps finished transactions to
// absorb retransmissions: Timer J (non-INVITE server) and D (INVITE client
// after an error); the proxy stands in for Timer L (see run). They are
// sipgo's package variables, so only the process sets them, before any
// transaction exists; tests running several nodes in one process keep the
// RFC values.
func setTransactionWait(d time.Duration) {
	sip.Timer_D, sip.Timer_J = d, d
}
