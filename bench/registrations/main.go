//go:build linux

// Command registrations measures how fast the control plane takes servers
// in: the time for n meshlet servers to register until callers see all of
// them in EDS, and the control plane's CPU per registration.
//
// It builds cmd/meshlet-controlplane and runs it as a child process on
// loopback, with an empty config directory, so that the control plane's
// CPU can be read from /proc apart from this load generator's. Before the
// clock starts, it gets one SVID per service identity from the control
// plane's CA (one CSR each, as a starting server makes). It then opens n
// registrations the way meshlet servers do (each on its own connection,
// mTLS with its service's SVID: the Register stream, NOT_SERVING, then
// SERVING), at most -c at a time, and watches the services with meshlet's
// own xDS client (package resolver) until every instance is in EDS. The
// registrations stay open until then, and are closed cleanly afterwards.
// Each of the -runs runs uses a fresh control-plane process.
//
// -plaintext runs the same binary in its insecure development mode
// (--insecure-plaintext-dev) and dials plaintext; -compare alternates TLS
// and plaintext runs (-runs of each) and prints their ratios. -csrs n also
// times n more CSRs before the registrations, each on its own connection.
//
//	go run ./bench/registrations                 # n=1000, 10 services, -c 16, 3 runs, TLS
//	go run ./bench/registrations -n 200 -runs 1
//	go run ./bench/registrations -compare        # TLS, plaintext, TLS, plaintext, ...
//
// Everything runs on 127.0.0.0/8 and no name is looked up. Each run is
// bounded by -timeout. It reads /proc, so it builds on Linux only.
//
// The connections to the control plane are made by bench/internal/
// controlchannel, the one package that knows about credentials, and the
// Register streams by bench/internal/registration (shared with
// bench/scale).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/bench/internal/controlchannel"
	"github.com/meshlet/meshlet/bench/internal/cpprocess"
	"github.com/meshlet/meshlet/bench/internal/procstat"
	"github.com/meshlet/meshlet/bench/internal/registration"
	"github.com/meshlet/meshlet/bench/internal/summary"
	"github.com/meshlet/meshlet/controlplane"
)

type config struct {
	n, services, concurrency, repeats int
	timeout                           time.Duration
	bin                               string
	logLevel                          string
	plaintext, compare                bool
	csrs                              int
}

// mode is how a run's control channel works.
type mode int

const (
	modeTLS       mode = iota // TLS, mTLS with SVIDs from the control plane's CA
	modePlaintext             // the control plane's --insecure-plaintext-dev
)

func (m mode) String() string {
	if m == modePlaintext {
		return "plaintext"
	}
	return "TLS"
}

// modes returns the channel of each run, in order.
func (c config) modes() []mode {
	var ms []mode
	for range c.repeats {
		switch {
		case c.compare:
			ms = append(ms, modeTLS, modePlaintext)
		case c.plaintext:
			ms = append(ms, modePlaintext)
		default:
			ms = append(ms, modeTLS)
		}
	}
	return ms
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 1000, "registrations per run")
	flag.IntVar(&c.services, "services", 10, "services the registrations are spread over, round robin")
	flag.IntVar(&c.concurrency, "c", 16, "registrations in progress at once")
	flag.IntVar(&c.repeats, "runs", 3, "runs, each against a fresh control-plane process (with -compare, runs of each)")
	flag.DurationVar(&c.timeout, "timeout", 2*time.Minute, "limit of each run, from starting the control plane to closing the registrations")
	flag.StringVar(&c.bin, "controlplane", "", "control-plane binary to run (default: build ./cmd/meshlet-controlplane)")
	flag.StringVar(&c.logLevel, "cp-log-level", "info", "the control plane's --log-level (info, its default, logs two lines per registration)")
	flag.BoolVar(&c.plaintext, "plaintext", false, "run the control plane with --insecure-plaintext-dev and dial plaintext (no SVIDs, no handshakes)")
	flag.BoolVar(&c.compare, "compare", false, "alternate TLS and plaintext runs, -runs of each, and print the ratios TLS / plaintext")
	flag.IntVar(&c.csrs, "csrs", 0, "before the registrations, time this many more CSRs, -c at a time, each on its own connection")
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
	case c.plaintext && c.compare:
		return errors.New("-plaintext and -compare: choose one (-compare runs both)")
	case c.csrs < 0:
		return fmt.Errorf("-csrs %d: want 0 or more", c.csrs)
	}
	return nil
}

// result is what one run measured.
type result struct {
	mode     mode
	svids    []time.Duration // each SVID the registrations use: dial, handshake, CSR
	csrs     []time.Duration // the -csrs sample, each dial, handshake and CSR
	csrWall  time.Duration   // the whole -csrs sample
	csrCPU   time.Duration   // control-plane CPU over csrWall
	wall     time.Duration   // first registration started to all n in EDS
	acked    time.Duration   // first registration started to the last SERVING answer
	cpCPU    time.Duration   // control-plane CPU over wall
	rss      int64           // control plane's resident set once all were in EDS
	peakRSS  int64
	benchCPU time.Duration  // this process's CPU over wall (it shares the cores)
	closed   time.Duration  // closing every registration cleanly, afterwards
	warnings []string       // the control plane's WARN and ERROR messages, first seen first
	warned   map[string]int // how many times each was logged
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
	bin, what, err := cpprocess.Binary(ctx, c.bin, dir)
	if err != nil {
		return err
	}
	channel := "TLS control channel (mTLS with SVIDs from its CA)"
	switch {
	case c.compare:
		channel = "TLS and plaintext (--insecure-plaintext-dev) alternating"
	case c.plaintext:
		channel = "plaintext control channel (--insecure-plaintext-dev)"
	}
	fmt.Printf("registrations: n=%d services=%d concurrency=%d runs=%d; control plane %s, %s, --log-level %s\n",
		c.n, c.services, c.concurrency, c.repeats, what, channel, c.logLevel)

	var results []result
	for i, m := range c.modes() {
		rdir := filepath.Join(dir, fmt.Sprintf("run%d-%s", i+1, m))
		r, err := runOnce(ctx, c, bin, rdir, m)
		if err != nil {
			return fmt.Errorf("run %d (%s): %w", i+1, m, err)
		}
		results = append(results, r)
		fmt.Printf("run %d (%s): %d in EDS in %v (%.0f/s; last SERVING answer at %v); control plane CPU %v = %.0f µs/registration, RSS %.1f MiB (peak %.1f); bench CPU %v; closed in %v\n",
			i+1, m, c.n, r.wall.Round(time.Millisecond), float64(c.n)/r.wall.Seconds(), r.acked.Round(time.Millisecond),
			r.cpCPU, perOp(r.cpCPU, c.n), mib(r.rss), mib(r.peakRSS), r.benchCPU.Round(10*time.Millisecond), r.closed.Round(time.Millisecond))
		for _, msg := range r.warnings {
			if devModeWarning(msg) {
				continue
			}
			short := msg
			if len(short) > 100 {
				short = short[:100] + "..."
			}
			fmt.Printf("  control plane WARN/ERROR %d×: %s\n", r.warned[msg], short)
		}
		if len(r.svids) > 0 {
			lo, med, hi := summary.Stats(r.svids, func(d time.Duration) float64 { return ms(d) })
			fmt.Printf("  before the clock: %d SVIDs (dial, handshake, CSR each) %.1f / %.1f / %.1f ms min/median/max\n", len(r.svids), lo, med, hi)
		}
		if len(r.csrs) > 0 {
			lo, med, hi := summary.Stats(r.csrs, func(d time.Duration) float64 { return ms(d) })
			fmt.Printf("  CSR sample: %d in %v, %d at a time, each (dial, handshake, CSR) %.1f / %.1f / %.1f ms min/median/max; control plane CPU %v = %.0f µs/CSR\n",
				len(r.csrs), r.csrWall.Round(time.Millisecond), min(c.concurrency, c.csrs), lo, med, hi, r.csrCPU, perOp(r.csrCPU, len(r.csrs)))
		}
	}
	byMode := map[mode][]result{}
	for _, r := range results {
		byMode[r.mode] = append(byMode[r.mode], r)
	}
	for _, m := range []mode{modeTLS, modePlaintext} {
		if rs := byMode[m]; len(rs) > 0 {
			printSummary(c, m, rs)
		}
	}
	if c.compare {
		printRatios(byMode[modeTLS], byMode[modePlaintext])
	}
	return nil
}

// devModeWarning reports whether msg is one of the warnings the control
// plane logs because of the flags the benchmark runs it with: the CA's
// --ca-insecure-dev (at start and for each CSR) and
// --insecure-plaintext-dev. Others, such as a refused registration, are
// shown.
func devModeWarning(msg string) bool {
	for _, p := range []string{"ca: insecure development mode", "ca: signed without a token", "INSECURE: "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// perIdentity is the most registrations one identity holds in a run.
func (c config) perIdentity() int { return (c.n + c.services - 1) / c.services }

func runOnce(ctx context.Context, c config, bin, dir string, m mode) (res result, err error) {
	res.mode = m
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	stateDir := filepath.Join(dir, "state")
	args := controlchannel.Args(stateDir, m == modePlaintext)
	if k := c.perIdentity(); k > controlplane.DefaultRegistrationsPerIdentity {
		args = append(args, "--max-registrations-per-identity", strconv.Itoa(k))
	}
	cp, err := cpprocess.Start(ctx, bin, dir, c.logLevel, args)
	if err != nil {
		return res, err
	}
	defer cp.Stop()
	accounts := []string{watcherServiceAccount}
	for k := range c.services {
		accounts = append(accounts, serviceName(k))
	}
	ch, err := controlchannel.New(ctx, cp.XDSAddr, stateDir, m == modePlaintext, benchNamespace, accounts)
	if err != nil {
		return res, fmt.Errorf("%w (control plane log: %s)", err, cp.LogPath)
	}
	defer ch.Close()
	res.svids = ch.CSRTimes()
	if c.csrs > 0 {
		cpu0, err := procstat.CPU(cp.PID())
		if err != nil {
			return res, err
		}
		start := time.Now()
		res.csrs, err = ch.SampleCSRs(ctx, serviceName(0), c.csrs, c.concurrency)
		if err != nil {
			return res, fmt.Errorf("CSR sample: %w (control plane log: %s)", err, cp.LogPath)
		}
		res.csrWall = time.Since(start)
		cpu1, err := procstat.CPU(cp.PID())
		if err != nil {
			return res, err
		}
		res.csrCPU = cpu1 - cpu0
	}

	w, err := watchEDS(ctx, ch, c.services, c.n)
	if err != nil {
		return res, err
	}
	defer w.Close()
	if err := w.waitSubscribed(ctx); err != nil {
		return res, fmt.Errorf("%w (control plane log: %s)", err, cp.LogPath)
	}

	cpu0, err := procstat.CPU(cp.PID())
	if err != nil {
		return res, err
	}
	insts := instances(c.n, c.services)
	self0 := procstat.SelfCPU()
	start := time.Now()
	regs, err := registration.RegisterAll(ctx, ch, insts, c.concurrency)
	if err != nil {
		return res, fmt.Errorf("%w (control plane log: %s)", err, cp.LogPath)
	}
	res.acked = time.Since(start)
	seen, err := w.wait(ctx)
	if err != nil {
		registration.CloseAll(regs, c.concurrency, time.Second)
		return res, err
	}
	cpu1, err := procstat.CPU(cp.PID())
	if err != nil {
		registration.CloseAll(regs, c.concurrency, time.Second)
		return res, err
	}
	res.wall = seen.Sub(start)
	res.cpCPU = cpu1 - cpu0
	res.benchCPU = procstat.SelfCPU() - self0
	mem, err := procstat.ReadMemory(cp.PID())
	res.rss, res.peakRSS = mem.RSS, mem.Peak
	if err != nil {
		registration.CloseAll(regs, c.concurrency, time.Second)
		return res, err
	}
	if err := w.err(); err != nil {
		registration.CloseAll(regs, c.concurrency, time.Second)
		return res, fmt.Errorf("the xDS watcher rejected an update: %w", err)
	}

	closing := time.Now()
	if err := registration.CloseAll(regs, c.concurrency, 10*time.Second); err != nil {
		return res, fmt.Errorf("deregister: %w", err)
	}
	res.closed = time.Since(closing)
	if res.warnings, res.warned, err = cp.Warnings(); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	return res, nil
}

// stats returns the min, median and max of f over v.

// metrics are the summary's rows.
var metrics = []struct {
	name, format string
	f            func(c config, r result) float64
}{
	{"wall time, all registrations in EDS (s)", "%.3f", func(_ config, r result) float64 { return r.wall.Seconds() }},
	{"registrations per second", "%.0f", func(c config, r result) float64 { return float64(c.n) / r.wall.Seconds() }},
	{"control-plane CPU (s)", "%.2f", func(_ config, r result) float64 { return r.cpCPU.Seconds() }},
	{"control-plane CPU per registration (µs)", "%.0f", func(c config, r result) float64 { return perOp(r.cpCPU, c.n) }},
	{"control-plane RSS after (MiB)", "%.1f", func(_ config, r result) float64 { return mib(r.rss) }},
	{"load generator CPU (s)", "%.2f", func(_ config, r result) float64 { return r.benchCPU.Seconds() }},
}

func printSummary(c config, m mode, rs []result) {
	fmt.Printf("\n%s: %d runs of %d registrations (%d services, %d at a time)  min / median / max\n", m, len(rs), c.n, c.services, c.concurrency)
	for _, row := range metrics {
		lo, med, hi := summary.Stats(rs, func(r result) float64 { return row.f(c, r) })
		fmt.Printf("  %-42s "+row.format+" / "+row.format+" / "+row.format+"\n", row.name, lo, med, hi)
	}
	var csrs []time.Duration
	var csrCPU time.Duration
	for _, r := range rs {
		csrs = append(csrs, r.csrs...)
		csrCPU += r.csrCPU
	}
	if len(csrs) > 0 {
		lo, med, hi := summary.Stats(csrs, func(d time.Duration) float64 { return ms(d) })
		fmt.Printf("  %-42s %.1f / %.1f / %.1f\n", "CSR, dial to SVID (ms)", lo, med, hi)
		fmt.Printf("  %-42s %.0f (all %d CSRs)\n", "control-plane CPU per CSR (µs)", perOp(csrCPU, len(csrs)), len(csrs))
	}
}

// printRatios prints TLS / plaintext: of the medians, and of each TLS run
// over the plaintext run right after it.
func printRatios(tls, plain []result) {
	fmt.Printf("\nTLS / plaintext  of medians;  run by run (each TLS run over the plaintext run after it) min / median / max\n")
	for _, name := range []string{"wall time", "control-plane CPU", "control-plane RSS"} {
		f := map[string]func(result) float64{
			"wall time":         func(r result) float64 { return r.wall.Seconds() },
			"control-plane CPU": func(r result) float64 { return r.cpCPU.Seconds() },
			"control-plane RSS": func(r result) float64 { return float64(r.rss) },
		}[name]
		_, mt, _ := summary.Stats(tls, f)
		_, mp, _ := summary.Stats(plain, f)
		pairs := make([]float64, min(len(tls), len(plain)))
		for i := range pairs {
			pairs[i] = f(tls[i]) / f(plain[i])
		}
		lo, med, hi := summary.Stats(pairs, func(x float64) float64 { return x })
		fmt.Printf("  %-20s %.2f;  %.2f / %.2f / %.2f\n", name, mt/mp, lo, med, hi)
	}
}

// perOp returns d / n in µs.
func perOp(d time.Duration, n int) float64 {
	return float64(d.Microseconds()) / float64(n)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }
