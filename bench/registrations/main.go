//go:build linux

// Command registrations measures how fast the control plane takes servers
// in: the time for n meshlet servers to register until callers see all of
// them in EDS, and the control plane's CPU per registration.
//
// It builds cmd/meshlet-controlplane and runs it as a child process on
// loopback, with an empty config directory, so that the control plane's
// CPU can be read from /proc apart from this load generator's. It then
// opens n registrations the way meshlet servers do (each on its own
// connection: the Register stream, NOT_SERVING, then SERVING), at most -c
// at a time, and watches the services with meshlet's own xDS client
// (package resolver) until every instance is in EDS. The registrations
// stay open until then, and are closed cleanly afterwards. Each of the -runs
// runs uses a fresh control-plane process.
//
//	go run ./bench/registrations                 # n=1000, 10 services, -c 16, 3 runs
//	go run ./bench/registrations -n 200 -runs 1
//
// Everything runs on 127.0.0.0/8 and no name is looked up. Each run is
// bounded by -timeout. It reads /proc, so it builds on Linux only.
//
// The connections to the control plane are made in controlchannel.go, and
// only there: that file is what changes when the control channel does.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

type config struct {
	n, services, concurrency, repeats int
	timeout                           time.Duration
	bin                               string
	logLevel                          string
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 1000, "registrations per run")
	flag.IntVar(&c.services, "services", 10, "services the registrations are spread over, round robin")
	flag.IntVar(&c.concurrency, "c", 16, "registrations in progress at once")
	flag.IntVar(&c.repeats, "runs", 3, "runs, each against a fresh control-plane process")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Minute, "limit of each run, from starting the control plane to closing the registrations")
	flag.StringVar(&c.bin, "controlplane", "", "control-plane binary to run (default: build ./cmd/meshlet-controlplane)")
	flag.StringVar(&c.logLevel, "cp-log-level", "info", "the control plane's --log-level (info, its default, logs two lines per registration)")
	flag.Parse()
	if err := c.check(); err != nil {
		fmt.Fprintln(os.Stderr, "registrations:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, c); err != nil {
		fmt.Fprintln(os.Stderr, "registrations:", err)
		os.Exit(1)
	}
}

func (c config) check() error {
	switch {
	case c.n < 1 || c.n > 100000:
		return fmt.Errorf("-n %d: want 1..100000", c.n)
	case c.services < 1 || c.services > c.n:
		return fmt.Errorf("-services %d: want 1..n (%d)", c.services, c.n)
	case c.concurrency < 1:
		return fmt.Errorf("-c %d: want at least 1", c.concurrency)
	case c.repeats < 1:
		return fmt.Errorf("-runs %d: want at least 1", c.repeats)
	case c.timeout <= 0:
		return fmt.Errorf("-timeout %v: want more than 0", c.timeout)
	}
	return nil
}

// result is what one run measured.
type result struct {
	wall     time.Duration // first registration started to all n in EDS
	acked    time.Duration // first registration started to the last SERVING answer
	cpCPU    time.Duration // control-plane CPU over wall
	rss      int64         // control plane's resident set once all were in EDS
	peakRSS  int64
	benchCPU time.Duration // this process's CPU over wall (it shares the cores)
	closed   time.Duration // closing every registration cleanly, afterwards
}

func run(ctx context.Context, c config) (err error) {
	dir, err := os.MkdirTemp("", "meshlet-bench-registrations-")
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "registrations: logs kept in %s\n", dir)
		}
	}()
	bin, what := c.bin, c.bin
	if bin == "" {
		bctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		var root string
		root, bin, err = buildControlPlane(bctx, dir)
		cancel()
		if err != nil {
			return err
		}
		what = "./cmd/meshlet-controlplane at " + commit(ctx, root)
	}
	fmt.Printf("registrations: n=%d services=%d concurrency=%d runs=%d; control plane %s, plaintext control channel, --log-level %s\n",
		c.n, c.services, c.concurrency, c.repeats, what, c.logLevel)

	var results []result
	for i := range c.repeats {
		rdir := filepath.Join(dir, fmt.Sprintf("run%d", i+1))
		r, err := runOnce(ctx, c, bin, rdir)
		if err != nil {
			return fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, r)
		fmt.Printf("run %d: %d in EDS in %v (%.0f/s; last SERVING answer at %v); control plane CPU %v = %.0f µs/registration, RSS %.1f MiB (peak %.1f); bench CPU %v; closed in %v\n",
			i+1, c.n, r.wall.Round(time.Millisecond), float64(c.n)/r.wall.Seconds(), r.acked.Round(time.Millisecond),
			r.cpCPU, perRegistration(r.cpCPU, c.n), mib(r.rss), mib(r.peakRSS), r.benchCPU.Round(10*time.Millisecond), r.closed.Round(time.Millisecond))
	}
	printSummary(c, results)
	return nil
}

func runOnce(ctx context.Context, c config, bin, dir string) (res result, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cp, err := startControlPlane(ctx, bin, dir, c.logLevel)
	if err != nil {
		return res, err
	}
	defer cp.stop()
	w, err := watchEDS(ctx, cp.xdsAddr, c.services, c.n)
	if err != nil {
		return res, err
	}
	defer w.Close()
	if err := w.waitSubscribed(ctx); err != nil {
		return res, err
	}

	cpu0, err := processCPU(cp.pid())
	if err != nil {
		return res, err
	}
	self0 := selfCPU()
	start := time.Now()
	regs, err := registerAll(ctx, cp.xdsAddr, c.n, c.services, c.concurrency)
	if err != nil {
		return res, err
	}
	res.acked = time.Since(start)
	seen, err := w.wait(ctx)
	if err != nil {
		closeAll(regs, c.concurrency, time.Second)
		return res, err
	}
	cpu1, err := processCPU(cp.pid())
	if err != nil {
		closeAll(regs, c.concurrency, time.Second)
		return res, err
	}
	res.wall = seen.Sub(start)
	res.cpCPU = cpu1 - cpu0
	res.benchCPU = selfCPU() - self0
	res.rss, res.peakRSS, err = processMemory(cp.pid())
	if err != nil {
		closeAll(regs, c.concurrency, time.Second)
		return res, err
	}
	if err := w.err(); err != nil {
		closeAll(regs, c.concurrency, time.Second)
		return res, fmt.Errorf("the xDS watcher rejected an update: %w", err)
	}

	closing := time.Now()
	if err := closeAll(regs, c.concurrency, 10*time.Second); err != nil {
		return res, fmt.Errorf("deregister: %w", err)
	}
	res.closed = time.Since(closing)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

func printSummary(c config, rs []result) {
	stat := func(f func(result) float64) (lo, med, hi float64) {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		m := v[len(v)/2]
		if len(v)%2 == 0 {
			m = (v[len(v)/2-1] + v[len(v)/2]) / 2
		}
		return v[0], m, v[len(v)-1]
	}
	fmt.Printf("\n%d runs of %d registrations (%d services, %d at a time)  min / median / max\n", len(rs), c.n, c.services, c.concurrency)
	row := func(name, format string, f func(result) float64) {
		lo, med, hi := stat(f)
		fmt.Printf("  %-42s "+format+" / "+format+" / "+format+"\n", name, lo, med, hi)
	}
	row(fmt.Sprintf("wall time, %d registrations in EDS (s)", c.n), "%.3f", func(r result) float64 { return r.wall.Seconds() })
	row("registrations per second", "%.0f", func(r result) float64 { return float64(c.n) / r.wall.Seconds() })
	row("control-plane CPU (s)", "%.2f", func(r result) float64 { return r.cpCPU.Seconds() })
	row("control-plane CPU per registration (µs)", "%.0f", func(r result) float64 { return perRegistration(r.cpCPU, c.n) })
	row("control-plane RSS after (MiB)", "%.1f", func(r result) float64 { return mib(r.rss) })
	row("load generator CPU (s)", "%.2f", func(r result) float64 { return r.benchCPU.Seconds() })
}

func perRegistration(d time.Duration, n int) float64 {
	return float64(d.Microseconds()) / float64(n)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// commit describes the checkout in root that the control plane was built
// from.
func commit(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty", "--abbrev=12")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "an unknown commit"
	}
	return strings.TrimSpace(string(out))
}
