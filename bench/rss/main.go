//go:build linux

// Command rss measures the memory a service gains from meshlet: the
// resident set (VmRSS) of a service with a gRPC server and client and an
// HTTP server and client, idle and under load, plain and with meshlet.
//
// It builds small child programs (bench/rss/internal/...) and runs each
// as its own process, so that /proc/<pid>/status gives its memory alone:
//
//   - plain: grpc-go and net/http servers and clients, calling themselves
//     on loopback over mTLS with an SVID from meshlet's CA (go-spiffe's
//     tlsconfig, from files);
//   - meshlet: one mesh.New, a mesh gRPC server and HTTP server, a
//     mesh.Dial client and a mesh HTTP client calling them through the
//     mesh (xDS routing, registration, mTLS);
//   - plain+xds: plain, linking google.golang.org/grpc/xds and using none
//     of it;
//   - idle, idle+xds: a program that links grpc-go and does nothing, and
//     the same with the blank import of google.golang.org/grpc/xds.
//
// The control plane is a separate process (cmd/meshlet-controlplane, built
// here, with its state in a temporary directory and a CA token for the
// service), so that its memory is counted nowhere. Each run starts every
// program afresh, in turn (plain, meshlet, plain+xds, idle, idle+xds,
// plain, ...), and reads VmRSS after -settle idle, then every 100ms while
// the service loads itself for -load (-c calls of each transport in
// flight), and at the end of it with VmHWM.
//
//	go run ./bench/rss                  # 3 runs, 10s of load each
//	go run ./bench/rss -runs 1 -load 3s
//
// Everything is on 127.0.0.1 and no name is looked up. It reads /proc, so
// it builds on Linux only.
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/bench/internal/cpprocess"
	"github.com/meshlet/meshlet/bench/internal/module"
	"github.com/meshlet/meshlet/bench/internal/summary"
	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/mesh"
)

type config struct {
	runs         int
	settle, load time.Duration
	concurrency  int
	cpLogLevel   string
	goalMiB      float64
	keep         bool
}

func main() {
	var c config
	flag.IntVar(&c.runs, "runs", 3, "runs of each program, in turn")
	flag.DurationVar(&c.settle, "settle", 2*time.Second, "idle time after start (and one call of each transport) before the idle reading")
	flag.DurationVar(&c.load, "load", 10*time.Second, "how long each service loads itself")
	flag.IntVar(&c.concurrency, "c", 8, "calls in flight per transport under load")
	flag.StringVar(&c.cpLogLevel, "cp-log-level", "warn", "the control plane's --log-level")
	flag.Float64Var(&c.goalMiB, "goal", 10, "the most MiB meshlet may add, idle or under load")
	flag.BoolVar(&c.keep, "keep", false, "keep the temporary directory (binaries, logs) even when all went well")
	flag.Parse()
	if c.runs < 1 || c.concurrency < 1 || c.load <= 0 || c.settle < 0 {
		fmt.Fprintln(os.Stderr, "rss: -runs and -c must be >= 1, -load > 0, -settle >= 0")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "rss:", err)
		os.Exit(1)
	}
}

// The service account of both services: the same identity, plain or not.
const serviceAccount = "rss"

func run(ctx context.Context, c config) (err error) {
	dir, err := os.MkdirTemp("", "meshlet-bench-rss-")
	if err != nil {
		return err
	}
	defer func() {
		if err == nil && !c.keep {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "rss: logs kept in %s\n", dir)
		}
	}()
	root, err := module.Root(ctx)
	if err != nil {
		return err
	}
	progs := []*program{
		{name: "plain", pkg: "./bench/rss/internal/plainservice", load: true},
		{name: "meshlet", pkg: "./bench/rss/internal/meshservice", load: true},
		{name: "plain+xds", pkg: "./bench/rss/internal/plainservice", tags: []string{"xdsimport"}, load: true},
		{name: "idle", pkg: "./bench/rss/internal/idle"},
		{name: "idle+xds", pkg: "./bench/rss/internal/idle", tags: []string{"xdsimport"}},
	}
	bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cpBin, err := cpprocess.Build(bctx, root, dir)
	if err != nil {
		return err
	}
	for _, p := range progs {
		p.bin = filepath.Join(dir, "bin-"+p.name)
		if err := module.Build(bctx, root, p.pkg, p.bin, p.tags...); err != nil {
			return err
		}
	}

	token := rand.Text()
	tokens := filepath.Join(dir, "tokens.yaml")
	if err := os.WriteFile(tokens, fmt.Appendf(nil, "tokens:\n- token: %s\n  namespace: default\n  serviceAccount: %s\n", token, serviceAccount), 0o600); err != nil {
		return err
	}
	stateDir := filepath.Join(dir, "state")
	cp, err := cpprocess.Start(ctx, cpBin, dir, c.cpLogLevel, []string{"--state-dir", stateDir, "--ca-tokens-file", tokens})
	if err != nil {
		return err
	}
	defer cp.Stop()
	svid, err := writeSVID(ctx, cp.XDSAddr, stateDir, serviceAccount, token, dir)
	if err != nil {
		return fmt.Errorf("%w (control plane log: %s)", err, cp.LogPath)
	}
	for _, p := range progs {
		switch {
		case p.name == "meshlet":
			p.env = []string{
				mesh.EnvControlPlane + "=" + cp.XDSAddr,
				mesh.EnvControlPlaneRoots + "=" + controlplane.CARootPath(stateDir),
				mesh.EnvCAToken + "=" + token,
			}
		case p.load:
			p.args = []string{"-cert", svid.cert, "-key", svid.key, "-bundle", svid.bundle}
		}
	}

	fmt.Printf("rss: meshlet at %s; %d runs; idle after %v, then %v of load with %d calls in flight per transport; control plane in its own process\n",
		module.Commit(ctx, root), c.runs, c.settle, c.load, c.concurrency)
	for _, p := range progs {
		if fi, err := os.Stat(p.bin); err == nil {
			fmt.Printf("  %-10s %5.1f MiB binary (%s%s)\n", p.name, mib(fi.Size()), p.pkg, tagsNote(p.tags))
		}
	}
	samples := map[string][]sample{}
	for i := range c.runs {
		for _, p := range progs {
			s, err := measure(ctx, p, dir, i+1, c.settle, c.load, c.concurrency)
			if err != nil {
				return fmt.Errorf("run %d, %s: %w (control plane log: %s)", i+1, p.name, err, cp.LogPath)
			}
			samples[p.name] = append(samples[p.name], s)
			fmt.Printf("run %d %-10s idle %6.1f MiB (anon %5.1f, file %5.1f)", i+1, p.name, mib(s.idle.RSS), mib(s.idle.Anon), mib(s.idle.File))
			if p.load {
				fmt.Printf("   under load %6.1f MiB, peak %6.1f MiB (calls gRPC, HTTP: %s)", mib(s.loaded), mib(s.after.Peak), s.calls)
			}
			fmt.Println()
		}
	}
	fmt.Println()
	printSummary(c, samples)
	return nil
}

func tagsNote(tags []string) string {
	if len(tags) == 0 {
		return ""
	}
	return fmt.Sprintf(", -tags %v", tags)
}

// printSummary prints each program's medians, then the differences that
// answer the questions: what meshlet adds to the plain service, and what
// linking gRPC-Go's xDS path adds; each of the medians and run by run.
func printSummary(c config, samples map[string][]sample) {
	idle := func(s sample) float64 { return mib(s.idle.RSS) }
	loaded := func(s sample) float64 { return mib(s.loaded) }
	peak := func(s sample) float64 { return mib(s.after.Peak) }
	fmt.Printf("%-10s %-24s %-24s %-24s (MiB, min / median / max)\n", "", "VmRSS idle", "VmRSS under load", "VmHWM")
	for _, name := range []string{"plain", "meshlet", "plain+xds", "idle", "idle+xds"} {
		ss := samples[name]
		fmt.Printf("%-10s %s %s %s\n", name, triple(ss, idle), triple(ss, loaded), triple(ss, peak))
	}
	fmt.Println()
	diff := func(a, b, what string, f func(sample) float64, goal bool) {
		_, ma, _ := summary.Stats(samples[a], f)
		_, mb, _ := summary.Stats(samples[b], f)
		pairs := make([]float64, min(len(samples[a]), len(samples[b])))
		for i := range pairs {
			pairs[i] = f(samples[a][i]) - f(samples[b][i])
		}
		lo, med, hi := summary.Stats(pairs, func(x float64) float64 { return x })
		note := ""
		if goal {
			note = fmt.Sprintf("  (goal <= %.0f MiB)", c.goalMiB)
		}
		fmt.Printf("%-22s %-11s %+6.1f MiB of medians; run by run %+.1f / %+.1f / %+.1f%s\n", a+" - "+b, what, ma-mb, lo, med, hi, note)
	}
	diff("meshlet", "plain", "idle", idle, true)
	diff("meshlet", "plain", "under load", loaded, true)
	diff("plain+xds", "plain", "idle", idle, false)
	diff("plain+xds", "plain", "under load", loaded, false)
	diff("idle+xds", "idle", "idle", idle, false)
}

func triple(ss []sample, f func(sample) float64) string {
	lo, med, hi := summary.Stats(ss, f)
	return fmt.Sprintf("%6.1f / %6.1f / %6.1f", lo, med, hi)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }
