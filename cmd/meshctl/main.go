// Command meshctl is meshlet's operator CLI. It reads the control plane's
// admin port, and checks config directories offline:
//
//	meshctl status                   every connected workload, ACK/NACK per xDS type
//	meshctl validate DIR             the control plane's own validation, offline
//	meshctl describe SERVICE[.NS]    routes, subsets, endpoints and policies of a service
//	meshctl config dump WORKLOAD     the xDS config a workload was sent
//	meshctl bootstrap ...            the GRPC_XDS_BOOTSTRAP of a service outside the library
//	meshctl agent ...                keeps a workload's SVID files current, from the CA or SPIRE
//
// --admin ADDR (or MESHLET_ADMIN; default 127.0.0.1:15014) is the admin
// port; -o json prints JSON instead of tables. It exits 0 on success, 1
// when the config is invalid or the control plane cannot answer, and 2 for
// a bad command line. See docs/meshctl.md.
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/meshlet/meshlet/controlplane"
)

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // an invalid config, or the control plane could not answer
	exitUsage = 2 // a bad command line, as the flag package's
)

// adminEnv is the variable that sets --admin.
const adminEnv = "MESHLET_ADMIN"

const usage = `meshctl: meshlet's operator CLI

Usage:
  meshctl [flags] status                  every connected workload and its ACK/NACK state per xDS type
  meshctl [flags] validate DIR            check a config directory as the control plane would (offline)
  meshctl [flags] describe SERVICE[.NS]   routes, subsets, endpoints and policies of a service
  meshctl [flags] config dump WORKLOAD    the xDS config a workload (node ID, service or service.namespace) was sent
  meshctl bootstrap --control-plane ADDR --service NAME ...
                                          the GRPC_XDS_BOOTSTRAP of a gRPC service outside meshlet's library
  meshctl agent --control-plane ADDR --service-account SA --out DIR ...
                                          keep a workload's certificate files current (the CA or SPIRE)
  (meshctl bootstrap -h, meshctl agent -h: their flags)

Flags (before or after the command):
  --admin ADDR   the control plane's admin port (env MESHLET_ADMIN; default ` + controlplane.DefaultAdminAddress + `)
  -o FORMAT      table or json (default table)
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// cli is one invocation's settings and output.
type cli struct {
	admin  string
	output string
	stdout io.Writer
	stderr io.Writer
	client *http.Client
}

// run runs meshctl with args and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr, client: &http.Client{Timeout: 10 * time.Second}}
	// These two have flags of their own.
	if len(args) > 0 && args[0] == "bootstrap" {
		return c.bootstrap(args[1:])
	}
	if len(args) > 0 && args[0] == "agent" {
		return c.agent(ctx, args[1:])
	}
	fs := flag.NewFlagSet("meshctl", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.admin, "admin", cmp.Or(os.Getenv(adminEnv), controlplane.DefaultAdminAddress), "")
	fs.StringVar(&c.output, "o", "table", "")
	pos, err := parse(fs, args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return exitOK
	case err != nil:
		return c.usageError("%v", err)
	case c.output != "table" && c.output != "json":
		return c.usageError("-o %q: want table or json", c.output)
	case len(pos) == 0:
		return c.usageError("a command is required")
	}
	cmd, rest := pos[0], pos[1:]
	switch {
	case cmd == "status" && len(rest) == 0:
		return c.status(ctx)
	case cmd == "validate" && len(rest) == 1:
		return c.validate(rest[0])
	case cmd == "describe" && len(rest) == 1:
		return c.describe(ctx, rest[0])
	case cmd == "config" && len(rest) == 2 && rest[0] == "dump":
		return c.configDump(ctx, rest[1])
	case cmd == "help":
		fmt.Fprint(stdout, usage)
		return exitOK
	case slices.Contains([]string{"status", "validate", "describe", "config"}, cmd):
		return c.usageError("wrong arguments for %s: %q", cmd, rest)
	default:
		return c.usageError("unknown command %q", cmd)
	}
}

// parse parses flags that may come before, between or after the
// positional arguments, and returns those.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) usageError(format string, a ...any) int {
	fmt.Fprintf(c.stderr, "meshctl: "+format+"\n\n%s", append(a, usage)...)
	return exitUsage
}

func (c *cli) fail(err error) int {
	fmt.Fprintf(c.stderr, "meshctl: %v\n", err)
	return exitError
}

// get fetches path from the admin port and decodes its JSON into v.
func (c *cli) get(ctx context.Context, path string, v any) error {
	u := "http://" + c.admin + path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the control plane's admin port at %s (set it with --admin or %s): %w", c.admin, adminEnv, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", u, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s", strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("%s: not the control plane's JSON (is %s its admin port?): %w", u, c.admin, err)
	}
	return nil
}

func (c *cli) printJSON(v any) int {
	enc := json.NewEncoder(c.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return c.fail(err)
	}
	return exitOK
}

// xdsTypes are the columns of status, in istioctl proxy-status's order.
var xdsTypes = []struct{ column, name string }{
	{"CDS", "Cluster"}, {"LDS", "Listener"}, {"EDS", "ClusterLoadAssignment"}, {"RDS", "RouteConfiguration"},
}

func (c *cli) status(ctx context.Context) int {
	var clients []controlplane.Client
	if err := c.get(ctx, "/debug/clients", &clients); err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		return c.printJSON(clients)
	}
	tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE ID\tSERVICE\tNAMESPACE\tIDENTITY\tCDS\tLDS\tEDS\tRDS\tCONNECTED")
	var nacks []string
	for _, cl := range clients {
		row := []string{cl.NodeID, dash(cl.Service), dash(cl.Namespace), dash(cl.Identity)}
		for _, t := range xdsTypes {
			ct := cl.Types[t.name]
			if ct == nil {
				row = append(row, "-")
				continue
			}
			row = append(row, ct.Status)
			if ct.NackCount > 0 {
				nacks = append(nacks, fmt.Sprintf("%s %s: version %s rejected %d time(s), last at %s: %s",
					cl.NodeID, t.name, ct.Nacked, ct.NackCount, ct.LastNack.Format(time.RFC3339), ct.NackDetail))
			}
		}
		row = append(row, cl.Connected.Format(time.RFC3339))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	if len(clients) == 0 {
		fmt.Fprintln(c.stdout, "(no connected workloads)")
	}
	if len(nacks) > 0 {
		fmt.Fprintln(c.stdout, "\nNACKs (each workload keeps its last good config):")
		for _, n := range nacks {
			fmt.Fprintln(c.stdout, "  "+n)
		}
	}
	return exitOK
}

func dash(s string) string { return cmp.Or(s, "-") }

// problem is one validation error, as -o json prints it.
type problem struct {
	File     string `json:"file,omitempty"`
	Resource string `json:"resource,omitempty"`
	Path     string `json:"path,omitempty"`
	Reason   string `json:"reason"`
}

func (c *cli) validate(dir string) int {
	err := controlplane.Validate(dir, controlplane.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var problems []problem
	for _, fe := range controlplane.FieldErrors(err) {
		problems = append(problems, problem{File: fe.File, Resource: fe.Resource, Path: fe.Path, Reason: fe.Reason})
	}
	if err != nil && len(problems) == 0 {
		// Not in a file: the directory is missing, or the translation
		// refused the whole.
		problems = append(problems, problem{Reason: err.Error()})
	}
	if c.output == "json" {
		if problems == nil {
			problems = []problem{}
		}
		c.printJSON(struct {
			Dir    string    `json:"dir"`
			Valid  bool      `json:"valid"`
			Errors []problem `json:"errors"`
		}{dir, err == nil, problems})
	} else if err == nil {
		fmt.Fprintf(c.stdout, "%s: valid\n", dir)
	} else {
		for _, p := range problems {
			fe := controlplane.FieldError{File: p.File, Resource: p.Resource, Path: p.Path, Reason: p.Reason}
			fmt.Fprintln(c.stdout, fe.Error())
		}
		fmt.Fprintf(c.stdout, "%s: %d error(s); the control plane would refuse this config\n", dir, len(problems))
	}
	if err != nil {
		return exitError
	}
	return exitOK
}

func (c *cli) describe(ctx context.Context, service string) int {
	var d controlplane.Description
	if err := c.get(ctx, "/debug/describe?service="+url.QueryEscape(service), &d); err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		return c.printJSON(d)
	}
	w := c.stdout
	fmt.Fprintf(w, "Service:   %s\nNamespace: %s\nPorts:\n", d.Service.Host, d.Service.Namespace)
	for _, p := range d.Service.Ports {
		fmt.Fprintf(w, "  %d %s %s\n", p.Number, p.Protocol, p.Name)
	}
	section := func(title string, rs []controlplane.DumpedResource) {
		fmt.Fprintf(w, "%s:\n", title)
		if len(rs) == 0 {
			fmt.Fprintln(w, "  (none)")
		}
		for _, r := range rs {
			fmt.Fprintf(w, "  %s %s/%s (%s)\n", r.Kind, r.Namespace, r.Name, r.File)
		}
	}
	section("VirtualServices", d.VirtualServices)
	section("DestinationRules", d.DestinationRules)
	fmt.Fprintln(w, "Subsets:")
	if len(d.Subsets) == 0 {
		fmt.Fprintln(w, "  (none)")
	}
	for _, s := range d.Subsets {
		fmt.Fprintf(w, "  %s (%s) %s: %s\n", s.Name, s.Rule, labels(s.Labels), dash(strings.Join(s.Instances, ", ")))
	}
	fmt.Fprintln(w, "Instances:")
	if len(d.Instances) == 0 {
		fmt.Fprintln(w, "  (none registered)")
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, in := range d.Instances {
		fmt.Fprintf(tw, "  %s\t%s:%d\t%s\t%s\t%s\n", in.ID, in.Address, in.Port, in.State, labels(in.Labels), dash(in.Identity))
	}
	tw.Flush()
	fmt.Fprintln(w, "Clusters (as served):")
	for _, cl := range d.Clusters {
		fmt.Fprintf(w, "  %s: %s\n", cl.Name, dash(strings.Join(cl.Endpoints, ", ")))
	}
	section("Policies", d.Policies)
	return exitOK
}

func labels(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + m[k]
	}
	return "{" + strings.Join(keys, ",") + "}"
}

func (c *cli) configDump(ctx context.Context, workload string) int {
	var wcs []controlplane.WorkloadConfig
	if err := c.get(ctx, "/debug/config_dump?workload="+url.QueryEscape(workload), &wcs); err != nil {
		return c.fail(err)
	}
	if c.output == "json" {
		return c.printJSON(wcs)
	}
	for i, wc := range wcs {
		if i > 0 {
			fmt.Fprintln(c.stdout)
		}
		fmt.Fprintf(c.stdout, "Node %s (service %s, %s), connected %s\n", wc.Client.NodeID, dash(wc.Client.Service),
			dash(wc.Client.Identity), wc.Client.Connected.Format(time.RFC3339))
		tw := tabwriter.NewWriter(c.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TYPE\tSTATUS\tACKED VERSION\tNAME")
		for _, t := range xdsTypes {
			ct := wc.Client.Types[t.name]
			if ct == nil {
				continue
			}
			for typ, d := range wc.XDS {
				if !strings.HasSuffix(typ, "."+t.name) {
					continue
				}
				for _, r := range d.Resources {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.name, ct.Status, dash(ct.Acked), resourceName(r))
				}
			}
		}
		tw.Flush()
	}
	return exitOK
}

// resourceName is the name of an xDS resource in its protojson form.
func resourceName(raw json.RawMessage) string {
	var r struct {
		Name        string `json:"name"`
		ClusterName string `json:"clusterName"`
	}
	json.Unmarshal(raw, &r)
	return cmp.Or(r.Name, r.ClusterName, "?")
}
