//go:build linux

// Command load measures HTTP under load: requests per second and CPU per
// request through three data planes, all with mTLS on the wire, from a
// load generator in the same process:
//
//   - direct: net/http client to net/http server, mTLS with SPIFFE SVIDs
//     from the control plane's CA (security.ServerTLSConfig and
//     ClientTLSConfig, as mesh.BenchmarkHTTP/plain-https-mtls);
//   - meshlet: meshlet's HTTP client (xDS routing, balancer, mTLS) to a
//     mesh.NewHTTPServer (PERMISSIVE listener, authorization check);
//   - haproxy: the sidecar pattern, plain net/http client to a local
//     haproxy A in plaintext, A to haproxy B over mTLS, B to a plain
//     net/http server in plaintext.
//
// Each request is a POST of a 1 KiB body answered with 1 KiB (-method GET
// sends no body), from -conns workers each making one request after
// another on its own keep-alive connection. The variants run alternately
// (direct, meshlet, haproxy, direct, ...), -runs times, for -duration
// each after -warmup, so that each ratio compares runs next to each
// other. CPU is this process's (getrusage: client, server and generator),
// plus the haproxy processes' own (/proc/<pid>/stat) for the sidecar.
//
//	go run ./bench/load                    # 3 runs of 10s each
//	go run ./bench/load -duration 3s -runs 1
//
// The control plane runs in this process, idle while the load runs.
// Everything is on 127.0.0.1 and no name is looked up. It reads /proc, so
// it builds on Linux only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/bench/internal/module"
	"github.com/meshlet/meshlet/bench/internal/summary"
)

type config struct {
	duration, warmup time.Duration
	runs, conns      int
	size             int
	method           string
	maxRequests      int64
	haproxy          string
	haproxyThreads   int
	variants         map[string]bool
	cpuProfile       string
}

func main() {
	var c config
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "measured time of each variant in each run")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "load before each measured window, not counted")
	flag.IntVar(&c.runs, "runs", 3, "runs of each variant, alternating")
	flag.IntVar(&c.conns, "conns", 8, "concurrent requests, each worker on its own keep-alive connection")
	flag.IntVar(&c.size, "size", 1024, "bytes of each response body, and of each request body with POST")
	flag.StringVar(&c.method, "method", "POST", "POST (a body each way) or GET (a body back only)")
	flag.Int64Var(&c.maxRequests, "max-requests", 10_000_000, "most requests in one window, warm-up included")
	flag.StringVar(&c.haproxy, "haproxy", "haproxy", "the haproxy binary for the sidecar variant")
	flag.IntVar(&c.haproxyThreads, "haproxy-threads", 2, "nbthread of each haproxy (Istio's sidecar default concurrency is 2)")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write this process's CPU profile of all the runs (set up excluded) to this file; with -variants, of one data plane")
	variants := flag.String("variants", "direct,meshlet,haproxy", "the variants to run, of direct, meshlet and haproxy")
	flag.Parse()
	c.variants = map[string]bool{}
	for _, v := range strings.Split(*variants, ",") {
		c.variants[strings.TrimSpace(v)] = true
	}
	if err := c.check(); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

func (c config) check() error {
	switch {
	case c.duration <= 0 || c.warmup < 0:
		return errors.New("-duration must be > 0 and -warmup >= 0")
	case c.runs < 1 || c.conns < 1 || c.size < 0 || c.maxRequests < 1:
		return errors.New("-runs, -conns and -max-requests must be >= 1, -size >= 0")
	case c.method != "POST" && c.method != "GET":
		return errors.New("-method must be POST or GET")
	}
	for v := range c.variants {
		if v != "direct" && v != "meshlet" && v != "haproxy" {
			return fmt.Errorf("-variants: unknown variant %q (direct, meshlet, haproxy)", v)
		}
	}
	return nil
}

func run(ctx context.Context, c config) error {
	dir, err := os.MkdirTemp("", "meshlet-bench-load-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	what := "an unknown commit"
	if root, err := module.Root(ctx); err == nil {
		what = module.Commit(ctx, root)
	}
	fmt.Printf("load: meshlet at %s; %s of %d B, %d B back; %d connections; %d runs of %v (+%v warm-up) per variant; GOMAXPROCS=%d, %d CPUs; load average %s\n",
		what, c.method, c.bodySize(), c.size, c.conns, c.runs, c.duration, c.warmup, runtime.GOMAXPROCS(0), runtime.NumCPU(), loadAverage())

	all, err := setUp(ctx, c, dir)
	if err != nil {
		return err
	}
	defer func() {
		for _, v := range all {
			v.close()
		}
	}()
	vs := chosen(c, all)
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	results := map[string][]result{}
	for i := range c.runs {
		for _, v := range vs {
			runtime.GC() // the last variant's garbage is not this one's
			r, err := measure(ctx, c, v)
			if err != nil {
				return fmt.Errorf("run %d, %s: %w", i+1, v.name, err)
			}
			results[v.name] = append(results[v.name], r)
			fmt.Printf("run %d %-8s %s\n", i+1, v.name, r)
		}
	}
	fmt.Printf("load average at the end: %s\n\n", loadAverage())
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.name
	}
	printSummary(names, results)
	return nil
}

// setUp starts the direct and meshlet variants (the direct one uses the
// mesh's SVIDs), and the sidecar's if chosen and haproxy is there.
func setUp(ctx context.Context, c config, dir string) ([]*variant, error) {
	ids, err := startIdentities(ctx, dir)
	if err != nil {
		return nil, err
	}
	direct, err := startDirect(ctx, c, ids)
	if err != nil {
		ids.close()
		return nil, err
	}
	meshlet, err := startMeshlet(ctx, c, ids)
	if err != nil {
		direct.close()
		ids.close()
		return nil, err
	}
	// The identities outlive the variants that use them: the last to
	// close is the mesh variant's.
	inner := meshlet.close
	meshlet.close = func() { inner(); ids.close() }
	vs := []*variant{direct, meshlet}
	if !c.variants["haproxy"] {
		return vs, nil
	}
	bin, err := findHAProxy(c.haproxy)
	if err != nil {
		fmt.Printf("load: %v; skipping the haproxy sidecar variant\n", err)
		return vs, nil
	}
	side, err := startSidecars(ctx, c, bin, dir)
	if err != nil {
		for _, v := range vs {
			v.close()
		}
		return nil, err
	}
	return append(vs, side), nil
}

// chosen returns the variants of vs that -variants names.
func chosen(c config, vs []*variant) []*variant {
	var out []*variant
	for _, v := range vs {
		if c.variants[v.name] {
			out = append(out, v)
		}
	}
	return out
}

// loadAverage is the first three fields of /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}

// printSummary prints the median of each variant and the ratios of
// meshlet to the others, of the medians and run by run.
func printSummary(names []string, results map[string][]result) {
	fmt.Printf("%-8s %28s %30s\n", "", "req/s min / median / max", "CPU µs/req min / median / max")
	for _, n := range names {
		lo, med, hi := summary.Stats(results[n], result.rate)
		clo, cmed, chi := summary.Stats(results[n], result.cpuPerRequest)
		fmt.Printf("%-8s %10.0f / %6.0f / %6.0f %12.1f / %6.1f / %6.1f\n", n, lo, med, hi, clo, cmed, chi)
	}
	fmt.Println()
	mesh := results["meshlet"]
	for _, base := range []string{"direct", "haproxy"} {
		if len(mesh) == 0 || len(results[base]) == 0 {
			continue
		}
		ratio := func(what string, f func(result) float64, goal string) {
			_, mm, _ := summary.Stats(mesh, f)
			_, mb, _ := summary.Stats(results[base], f)
			pairs := make([]float64, min(len(mesh), len(results[base])))
			for i := range pairs {
				pairs[i] = f(mesh[i]) / f(results[base][i])
			}
			lo, med, hi := summary.Stats(pairs, func(x float64) float64 { return x })
			fmt.Printf("meshlet / %-7s %-16s %.2f of medians; run by run %.2f / %.2f / %.2f%s\n", base, what, mm/mb, lo, med, hi, goal)
		}
		tgoal, cgoal := "", ""
		if base == "direct" {
			tgoal, cgoal = "  (goal >= 0.90)", "  (goal <= 1.10)"
		}
		ratio("throughput", result.rate, tgoal)
		ratio("CPU per request", result.cpuPerRequest, cgoal)
	}
}
