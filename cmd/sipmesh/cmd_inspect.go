package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sipmesh/sipmesh/node"
	"github.com/sipmesh/sipmesh/roles/relay"
)

// connFlags are the flags that say which node to ask and as whom.
type connFlags struct {
	config, node, ca, cert, key string
	json                        bool
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.config, "config", "", "a node's config file: ask that node with its certificate")
	fs.StringVar(&c.node, "node", "", "admin address HOST[:PORT] of the node to ask (default port 7948)")
	fs.StringVar(&c.ca, "ca", "", "cluster CA certificate (with --node)")
	fs.StringVar(&c.cert, "cert", "", "operator or node certificate (with --node)")
	fs.StringVar(&c.key, "key", "", "its private key (with --node)")
	fs.BoolVar(&c.json, "json", false, "print JSON (field names are stable, see README)")
}

// parse parses args (flags and positional arguments, mixed) and builds
// the admin client they name.
func (c *connFlags) parse(fs *flag.FlagSet, args []string) (*node.AdminClient, []string, error) {
	pos, err := parseFlags(fs, args)
	if err != nil {
		return nil, nil, err
	}
	cl, err := c.client()
	return cl, pos, err
}

func (c *connFlags) client() (*node.AdminClient, error) {
	var t node.Target
	if c.config != "" {
		if c.node != "" {
			return nil, errors.New("give either --config or --node, not both")
		}
		var err error
		if t, err = node.TargetFromConfig(c.config); err != nil {
			return nil, err
		}
	} else {
		t = node.Target{Node: c.node, CA: c.ca, Cert: c.cert, Key: c.key}
	}
	return node.NewAdminClient(t)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func table(w io.Writer, header string, rows [][]string) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func cmdMembers(ctx context.Context, env *cliEnv, args []string) error {
	var c connFlags
	fs := newFlags(env, "members", "[--json] [--config FILE | --node HOST[:PORT] --ca F --cert F --key F]")
	c.register(fs)
	cl, _, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	ms, err := cl.Members(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(env.stdout, ms)
	}
	return printMembers(env.stdout, ms)
}

func printMembers(w io.Writer, ms []node.MemberJSON) error {
	rows := make([][]string, 0, len(ms))
	for _, m := range ms {
		rows = append(rows, []string{m.Name, m.Datacenter, m.State, m.Address, strings.Join(m.Roles, ",")})
	}
	return table(w, "NAME\tDATACENTER\tSTATE\tADDRESS\tROLES", rows)
}

func cmdRing(ctx context.Context, env *cliEnv, args []string) error {
	var c connFlags
	fs := newFlags(env, "ring", "[--role R] [--json] [connection flags]")
	c.register(fs)
	role := fs.String("role", "", "only this role's ring (proxy, registrar, relay, presence)")
	cl, _, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	rg, err := cl.Ring(ctx, *role)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(env.stdout, rg)
	}
	roles := make([]string, 0, len(rg.Roles))
	for r := range rg.Roles {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	var rows [][]string
	for _, r := range roles {
		for _, m := range rg.Roles[r] {
			items := "-"
			if m.Items != nil {
				items = fmt.Sprint(*m.Items)
			}
			rows = append(rows, []string{r, m.Name, fmt.Sprint(m.Partitions), fmt.Sprintf("%.1f%%", 100*m.Share), items})
		}
		if len(rg.Roles[r]) == 0 {
			rows = append(rows, []string{r, "(no alive member)", "-", "-", "-"})
		}
	}
	fmt.Fprintf(env.stdout, "%d partitions\n", rg.Partitions)
	return table(env.stdout, "ROLE\tNODE\tPARTITIONS\tSHARE\tITEMS", rows)
}

func cmdLookup(ctx context.Context, env *cliEnv, args []string) error {
	var c connFlags
	fs := newFlags(env, "lookup", "KEY [--role R] [--json] [connection flags]")
	c.register(fs)
	role := fs.String("role", "", "ring to look on (default registrar)")
	cl, pos, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr(env, "lookup", "give exactly one KEY, e.g. sip:alice@example.test")
	}
	lk, err := cl.Lookup(ctx, pos[0], *role)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(env.stdout, lk)
	}
	owner := lk.Owner
	if owner == "" {
		owner = "(no alive member with role " + lk.Role + ")"
	}
	rows := [][]string{
		{"key", lk.Key}, {"role", lk.Role}, {"owner", owner},
		{"replicas", strings.Join(lk.Replicas, ", ")}, {"holders", strings.Join(lk.Holders, ", ")},
	}
	if p := lk.Presentity; p != nil {
		// A presentity reads better as publications and watchers than as
		// raw records.
		for i, pub := range p.Publications {
			rows = append(rows, []string{fmt.Sprintf("publication %d", i+1),
				fmt.Sprintf("etag %s  %s  expires in %ds", pub.ETag, strings.Join(pub.Status, " "), pub.Expires)})
		}
		for i, w := range p.Watchers {
			rows = append(rows, []string{fmt.Sprintf("watcher %d", i+1),
				fmt.Sprintf("%s  %s  contact %s  expires in %ds", w.Watcher, w.State, w.Contact, w.Expires)})
		}
		if len(p.Publications)+len(p.Watchers) == 0 {
			rows = append(rows, []string{"presentity", "no publication, no watcher"})
		}
	} else {
		for i, r := range lk.Records {
			b, _ := json.Marshal(r)
			rows = append(rows, []string{fmt.Sprintf("record %d", i+1), string(b)})
		}
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 0, 2, ' ', 0)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	return tw.Flush()
}

func cmdDNSRecords(ctx context.Context, env *cliEnv, args []string) error {
	var c connFlags
	fs := newFlags(env, "dns records", "[--json] [connection flags]")
	c.register(fs)
	cl, _, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	z, err := cl.DNSRecords(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(env.stdout, z)
	}
	if z.Serial != 0 {
		fmt.Fprintf(env.stdout, "zone %s serial %d\n", z.Zone, z.Serial)
	} else {
		fmt.Fprintf(env.stdout, "zone %s\n", z.Zone)
	}
	rows := make([][]string, 0, len(z.Records))
	for _, r := range z.Records {
		rows = append(rows, []string{r.Name, fmt.Sprint(r.TTL), r.Type, r.Data})
	}
	return table(env.stdout, "NAME\tTTL\tTYPE\tDATA", rows)
}

func cmdRelaySessions(ctx context.Context, env *cliEnv, args []string) error {
	var c connFlags
	fs := newFlags(env, "relay sessions", "[--json] [connection flags]")
	c.register(fs)
	cl, _, err := c.parse(fs, args)
	if err != nil {
		return err
	}
	ss, err := cl.RelaySessions(ctx)
	if err != nil {
		return err
	}
	if c.json {
		return printJSON(env.stdout, ss)
	}
	return relay.WriteTable(env.stdout, ss, time.Now())
}
