// Command sipmesh runs a node of the mesh, manages the cluster's
// certificates, starts a local development cluster and inspects a running
// mesh through a node's admin API.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
)

// command is one sub-command. Groups ("ca init", "cert issue") are commands
// whose name has two words.
type command struct {
	name    string
	args    string
	summary string
	run     func(ctx context.Context, env *cliEnv, args []string) error
}

// cliEnv is what a command may use instead of process globals, so tests can
// run commands in-process.
type cliEnv struct {
	stdout, stderr io.Writer
}

func commands() []command {
	return []command{
		{"run", "--config FILE", "run a node", cmdRun},
		{"dev", "[--nodes N] [--dir DIR]", "start a local cluster on loopback with nothing prepared", cmdDev},
		{"ca init", "--cluster DOMAIN --out DIR", "create the cluster CA", cmdCAInit},
		{"cert issue", "--ca DIR --name NAME [--dc DC] [--roles r1,r2] [--ip IP]... [--dns NAME]... [--operator] [--days N] --out DIR", "issue a node or operator certificate", cmdCertIssue},
		{"cert revoke", "--ca DIR NAME|SERIAL", "revoke certificates and rewrite ca.crl", cmdCertRevoke},
		{"members", "[--json] [--config FILE | --node HOST[:PORT] --ca F --cert F --key F]", "list the mesh's members", cmdMembers},
		{"ring", "[--role R] [--json] [connection flags]", "show how partitions are shared", cmdRing},
		{"lookup", "KEY [--role R] [--json] [connection flags]", "show where a key (an AOR) lives", cmdLookup},
		{"dns records", "[--json] [connection flags]", "show the DNS records the mesh publishes", cmdDNSRecords},
		{"relay sessions", "[--json] [connection flags]", "list the media sessions of a node's relay", cmdRelaySessions},
		{"version", "", "print the version", cmdVersion},
	}
}

// version is set by the linker (-X main.version=...).
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(runCLI(ctx, &cliEnv{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:]))
}

// errUsage means the message was already printed with the usage.
var errUsage = errors.New("usage")

func runCLI(ctx context.Context, env *cliEnv, args []string) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(env.stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		words := strings.Fields(c.name)
		if len(args) < len(words) || strings.Join(args[:len(words)], " ") != c.name {
			continue
		}
		err := c.run(ctx, env, args[len(words):])
		switch {
		case err == nil:
			return 0
		case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
			return 2
		default:
			fmt.Fprintf(env.stderr, "sipmesh %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(env.stderr, "sipmesh: unknown command %q\n\n", strings.Join(args, " "))
	usage(env.stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: sipmesh COMMAND [flags]")
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands() {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nRun 'sipmesh COMMAND -h' for a command's flags.")
}

// newFlags makes a flag set for a command that reports errors to env.
func newFlags(env *cliEnv, name, args string) *flag.FlagSet {
	fs := flag.NewFlagSet("sipmesh "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "usage: sipmesh %s %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags that may be mixed with positional arguments
// (sipmesh lookup alice@example.test --json).
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, errUsage
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag collects a repeated flag (--ip A --ip B) or a comma list.
type listFlag []string

func (l *listFlag) String() string { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func cmdVersion(_ context.Context, env *cliEnv, _ []string) error {
	fmt.Fprintln(env.stdout, "sipmesh", version)
	return nil
}
