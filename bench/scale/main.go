//go:build linux

// Command scale measures the control plane at scale: N endpoints in S
// services followed by C light xDS clients, and how fast an endpoint
// churn reaches them all.
//
// It builds cmd/meshlet-controlplane and runs it as a child process on
// loopback, so that its CPU and memory can be read from /proc apart from
// this process's. Its config directory holds one file per service: a
// ServiceEntry (bench-k.default.svc.cluster.local, port 9080, selecting
// app=bench-k) and its WorkloadEntries, N in all, spread round robin. In
// this process it then starts C light xDS clients: meshlet's own
// resolver.Client, each with its own ADS stream on its own connection
// (mTLS with an SVID from the control plane's CA), each watching every
// service's Cluster and the ClusterLoadAssignment it names (not Listeners
// or RouteConfigurations: an endpoint churn changes neither). With
// -light (the default above 200 clients) each client is instead a raw ADS
// stream over the same mTLS (adsclient.go) that ACKs every response and
// keeps per service only a fingerprint of its endpoints, so that at 1,000
// clients and 10,000 endpoints the control plane is what is measured, not
// 1,000 resolvers' decoding. It reports:
//
//   - initial sync: for each client, from its start to holding every
//     service's endpoints exactly; all C clients start at once;
//   - file churn: -churn percent of the WorkloadEntries get a new address,
//     by rewriting the files of the services they are in (a temporary
//     file renamed over each, as editors do); propagation is, for each
//     client, the time from the first write to holding exactly the new
//     endpoint set of every service;
//   - registration churn: the same share of endpoints swapped by
//     registrations: as many instances as that share, registered before
//     (as bench/registrations registers: a Register stream on its own
//     connection, mTLS with its service's SVID, NOT_SERVING then SERVING),
//     deregister cleanly while as many new ones register, -reg-c at a
//     time; propagation runs from the start of the churn. The new
//     instances' connections are up before it starts, as mesh.New leaves
//     a workload's before its servers register; -reg-dial dials each
//     within the churn instead, TLS handshake included;
//   - the control plane's CPU per churn (from /proc/<pid>/stat, 10ms
//     resolution), and per registry change;
//   - the resident memory (VmRSS) of the control plane and of this
//     process after the initial sync and at the end, with their peaks.
//
// Each of the -runs runs uses a fresh control-plane process and makes
// -rounds file churns and registration churns, alternately.
//
//	go run ./bench/scale                          # N=1000, C=100, S=10, 10% churn, 3 rounds, 1 run, TLS
//	go run ./bench/scale -n 10000 -clients 1000 -services 100 -rounds 1
//	go run ./bench/scale -light                   # raw ADS clients also at C<=200
//	go run ./bench/scale -plaintext               # the control plane's --insecure-plaintext-dev
//
// Everything runs on 127.0.0.0/8 (the WorkloadEntries' addresses in 10/8
// are never dialled) and no name is looked up. Each run is bounded by
// -timeout. It reads /proc, so it builds on Linux only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/bench/internal/controlchannel"
	"github.com/meshlet/meshlet/bench/internal/cpprocess"
	"github.com/meshlet/meshlet/bench/internal/parallel"
	"github.com/meshlet/meshlet/bench/internal/procstat"
	"github.com/meshlet/meshlet/bench/internal/registration"
	"github.com/meshlet/meshlet/bench/internal/summary"
	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/registrypb"
)

type config struct {
	n, clients, services int
	churnPct             float64
	runs, rounds         int
	regConcurrency       int
	timeout              time.Duration
	bin                  string
	logLevel             string
	plaintext            bool
	noRegChurn           bool   // file churns only
	noFileChurn          bool   // registration churns only
	cpuProfile           string // this process's CPU profile, written at the end
	light                bool   // raw ADS clients that keep only fingerprints (adsClient)
	seed                 uint64
	keepLogs             bool // keep the control plane's logs after a good run too
	regDial              bool // dial each registration's connection within the churn
}

func main() {
	var c config
	flag.IntVar(&c.n, "n", 1000, "WorkloadEntries (endpoints in the files)")
	flag.IntVar(&c.clients, "clients", 100, "light xDS clients (C)")
	flag.IntVar(&c.services, "services", 10, "services the WorkloadEntries are spread over, round robin, one file each")
	flag.Float64Var(&c.churnPct, "churn", 10, "share of the endpoints swapped by each churn, in percent")
	flag.IntVar(&c.runs, "runs", 1, "runs, each against a fresh control-plane process")
	flag.IntVar(&c.rounds, "rounds", 3, "file churns and registration churns in each run, alternately")
	flag.IntVar(&c.regConcurrency, "reg-c", 16, "registrations (and deregistrations) in progress at once")
	flag.DurationVar(&c.timeout, "timeout", 3*time.Minute, "limit of each run, from starting the control plane to the end of its last churn")
	flag.StringVar(&c.bin, "controlplane", "", "control-plane binary to run (default: build ./cmd/meshlet-controlplane)")
	flag.StringVar(&c.logLevel, "cp-log-level", "info", "the control plane's --log-level")
	flag.BoolVar(&c.plaintext, "plaintext", false, "run the control plane with --insecure-plaintext-dev and dial plaintext")
	flag.Uint64Var(&c.seed, "seed", 1, "seed of the choice of endpoints each file churn swaps")
	flag.BoolVar(&c.noRegChurn, "no-reg-churn", false, "make file churns only (at C=1,000 the registrations before the first registration churn take minutes)")
	flag.BoolVar(&c.noFileChurn, "no-file-churn", false, "make registration churns only (to profile them)")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write this process's CPU profile (the clients and registrations) to this file; the control plane's is on MESHLET_PPROF_ADDR")
	flag.BoolVar(&c.regDial, "reg-dial", false, "dial each new instance's connection within the registration churn (TLS handshake included), instead of before it as mesh.New does at a workload's start")
	flag.BoolVar(&c.keepLogs, "keep-logs", false, "keep the control plane's logs (its stage times per reload) after a run that succeeded too")
	flag.BoolVar(&c.light, "light", false, "light clients: raw ADS streams that hash each ClusterLoadAssignment and drop it, instead of resolver.Clients (default: on when -clients is above 200)")
	flag.Parse()
	// resolver.Clients hold every endpoint (about 3.7 MiB each at
	// N=10,000): above 200 of them this process, not the control plane,
	// is what runs out.
	lightSet := false
	flag.Visit(func(fl *flag.Flag) { lightSet = lightSet || fl.Name == "light" })
	if !lightSet && c.clients > 200 {
		c.light = true
	}
	if err := c.check(); err != nil {
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.cpuProfile != "" {
		f, err := os.Create(c.cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "scale: -cpuprofile:", err)
			os.Exit(2)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	if _, err := run(ctx, c, os.Stdout); err != nil {
		pprof.StopCPUProfile()
		fmt.Fprintln(os.Stderr, "scale:", err)
		os.Exit(1)
	}
}

func (c config) check() error {
	switch {
	case c.n < 1 || c.n > 1000000:
		return fmt.Errorf("-n %d: want 1..1000000", c.n)
	case c.services < 1 || c.services > c.n:
		return fmt.Errorf("-services %d: want 1..n (%d)", c.services, c.n)
	case c.clients < 1:
		return fmt.Errorf("-clients %d: want at least 1", c.clients)
	case !(c.churnPct > 0 && c.churnPct <= 100):
		return fmt.Errorf("-churn %v: want a percentage above 0, at most 100", c.churnPct)
	case c.runs < 1:
		return fmt.Errorf("-runs %d: want at least 1", c.runs)
	case c.rounds < 0:
		return fmt.Errorf("-rounds %d: want 0 or more", c.rounds)
	case c.noRegChurn && c.noFileChurn:
		return fmt.Errorf("-no-reg-churn with -no-file-churn: no churn left; use -rounds 0")
	case c.regConcurrency < 1:
		return fmt.Errorf("-reg-c %d: want at least 1", c.regConcurrency)
	case c.timeout <= 0:
		return fmt.Errorf("-timeout %v: want more than 0", c.timeout)
	}
	return nil
}

// churnSize is how many endpoints each churn swaps.
func (c config) churnSize() int { return max(1, int(math.Round(float64(c.n)*c.churnPct/100))) }

// result is what one run measured.
type result struct {
	initial     []time.Duration // each client, its start to holding every service's endpoints
	initialWall time.Duration   // the first client's start to the last one's sync
	initialCPU  time.Duration   // control-plane CPU over initialWall
	// This process's CPU over initialWall: the clients'.
	initialBenchCPU time.Duration
	file, reg       []churn
	// Resident memory, after the initial sync and at the end.
	cpSynced, benchSynced procstat.Memory
	// heapBefore and heapSynced are this process's live heap (after a
	// GC) before the clients start and once they have synced: RSS keeps
	// what an earlier run freed, so its growth said little per client.
	heapBefore, heapSynced   uint64
	cpEnd, benchEnd          procstat.Memory
	syncResponses, syncBytes int64 // what the light clients received by the initial sync
	endResponses, endBytes   int64 // and by the end
	warnings                 []string
	warned                   map[string]int
}

// churn is what one churn measured.
type churn struct {
	prop    []time.Duration // each client, the churn's start to holding the new endpoints
	cpu     time.Duration   // control-plane CPU from the start to the last client's
	ownCPU  time.Duration   // this process's CPU (the clients, the registrations) over the same time
	files   int             // files rewritten (file churn)
	changes int             // registry changes (registration churn)
	acked   time.Duration   // the churn's start to the last SERVING answer and deregistration

	// Registration churn: the churn's start to the last deregistration
	// and to the last SERVING answer, and each registration's own time.
	closed, registered time.Duration
	regTook            []time.Duration
}

func run(ctx context.Context, c config, out io.Writer) (results []result, err error) {
	dir, err := os.MkdirTemp("", "meshlet-bench-scale-")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err == nil && !c.keepLogs {
			os.RemoveAll(dir)
		} else {
			fmt.Fprintf(os.Stderr, "scale: logs kept in %s\n", dir)
		}
	}()
	bin, what, err := cpprocess.Binary(ctx, c.bin, dir)
	if err != nil {
		return nil, err
	}
	kind := "meshlet resolver.Clients"
	if c.light {
		kind = "light clients (raw ADS, endpoints hashed and dropped)"
	}
	channel := "TLS control channel (mTLS with SVIDs from its CA)"
	if c.plaintext {
		channel = "plaintext control channel (--insecure-plaintext-dev)"
	}
	fmt.Fprintf(out, "scale: N=%d endpoints in S=%d services, C=%d %s (each watching every service's Cluster and its endpoints), churn %g%% = %d endpoints, %d rounds, %d runs; control plane %s, %s, --log-level %s\n",
		c.n, c.services, c.clients, kind, c.churnPct, c.churnSize(), c.rounds, c.runs, what, channel, c.logLevel)
	for i := range c.runs {
		r, err := runOnce(ctx, c, bin, filepath.Join(dir, fmt.Sprintf("run%d", i+1)), out)
		if err != nil {
			return results, fmt.Errorf("run %d: %w", i+1, err)
		}
		results = append(results, r)
	}
	printSummary(out, c, results)
	return results, nil
}

func runOnce(ctx context.Context, c config, bin, dir string, out io.Writer) (res result, err error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	topo := newTopology(c.n, c.services)
	cfgDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return res, err
	}
	for k := range c.services {
		if err := topo.writeService(cfgDir, k); err != nil {
			return res, err
		}
	}
	stateDir := filepath.Join(dir, "state")
	args := controlchannel.Args(stateDir, c.plaintext)
	// During a registration churn a service holds its old and its new
	// instances.
	if k := 2 * ((c.churnSize() + c.services - 1) / c.services); k > controlplane.DefaultRegistrationsPerIdentity {
		args = append(args, "--max-registrations-per-identity", strconv.Itoa(k))
	}
	cp, err := cpprocess.Start(ctx, bin, dir, c.logLevel, args)
	if err != nil {
		return res, err
	}
	defer cp.Stop()
	withLog := func(err error) error { return fmt.Errorf("%w (control plane log: %s)", err, cp.LogPath) }
	accounts := []string{clientServiceAccount}
	for k := range c.services {
		accounts = append(accounts, serviceName(k))
	}
	ch, err := controlchannel.New(ctx, cp.XDSAddr, stateDir, c.plaintext, benchNamespace, accounts)
	if err != nil {
		return res, withLog(err)
	}
	defer ch.Close()

	// Initial sync: every client starts at once.
	res.heapBefore = liveHeap()
	f := newFleet(c.services, c.clients)
	defer f.Close()
	cpu0, err := procstat.CPU(cp.PID())
	if err != nil {
		return res, err
	}
	benchCPU0, err := procstat.CPU(os.Getpid())
	if err != nil {
		return res, err
	}
	start := time.Now()
	done := f.expect(topo.want(), start)
	if err := parallel.ForEach(ctx, c.clients, c.clients, func(i int) error { return f.start(ctx, ch, i, c.light) }); err != nil {
		return res, err
	}
	fromFirst, initial, err := f.wait(ctx, done)
	if err != nil {
		return res, withLog(fmt.Errorf("initial sync: %w", err))
	}
	res.initial = initial
	res.initialWall = slices.Max(fromFirst)
	if res.initialCPU, err = cpuSince(cp.PID(), cpu0); err != nil {
		return res, err
	}
	// The clients share the 2 cores: their decoding is the other half of
	// the sync's wall time.
	if res.initialBenchCPU, err = cpuSince(os.Getpid(), benchCPU0); err != nil {
		return res, err
	}
	if res.cpSynced, err = procstat.ReadMemory(cp.PID()); err != nil {
		return res, err
	}
	res.syncResponses, res.syncBytes = f.responses.Load(), f.bytes.Load()
	if res.benchSynced, err = procstat.ReadMemory(os.Getpid()); err != nil {
		return res, err
	}
	res.heapSynced = liveHeap()
	fmt.Fprintf(out, "  initial sync of %d clients: %s ms p50/p99/max, all in %v; control plane CPU %v, RSS %.1f MiB; this process CPU %v, RSS %.1f MiB (live heap %.0f KiB more per client)\n",
		c.clients, percentiles(res.initial), res.initialWall.Round(time.Millisecond), res.initialCPU,
		mib(res.cpSynced.RSS), res.initialBenchCPU, mib(res.benchSynced.RSS), res.heapPerClient(c.clients))
	if c.light {
		fmt.Fprintf(out, "  initial sync: %d responses, %.0f KiB, to the %d light clients; %d streams ended by the control plane and opened again\n", res.syncResponses, float64(res.syncBytes)/1024, c.clients, f.reconnects.Load())
	}

	rng := rand.New(rand.NewPCG(c.seed, 0))
	var regs []*registration.Registration
	defer func() { registration.CloseAll(regs, c.regConcurrency, time.Second) }()
	for round := range c.rounds {
		if !c.noFileChurn {
			fc, err := fileChurn(ctx, f, topo, cfgDir, cp.PID(), c.churnSize(), rng)
			if err != nil {
				return res, withLog(fmt.Errorf("file churn %d: %w", round+1, err))
			}
			res.file = append(res.file, fc)
			fmt.Fprintf(out, "  file churn %d: %d endpoints in %d files: %s ms p50/p99/max; control plane CPU %v, this process %v\n",
				round+1, c.churnSize(), fc.files, percentiles(fc.prop), fc.cpu, fc.ownCPU)
		}
		if c.noRegChurn {
			continue
		}
		var rc churn
		rc, regs, err = regChurn(ctx, f, topo, ch, cp.PID(), regs, c.churnSize(), c.regConcurrency, c.regDial)
		if err != nil {
			return res, withLog(fmt.Errorf("registration churn %d: %w", round+1, err))
		}
		res.reg = append(res.reg, rc)
		fmt.Fprintf(out, "  registration churn %d: %d endpoints (%d registry changes, last answered at %v): %s ms p50/p99/max; control plane CPU %v, this process %v\n",
			round+1, c.churnSize(), rc.changes, rc.acked.Round(time.Millisecond), percentiles(rc.prop), rc.cpu, rc.ownCPU)
		took := "NOT_SERVING, SERVING; connected before"
		if c.regDial {
			took = "dial, NOT_SERVING, SERVING"
		}
		fmt.Fprintf(out, "    deregistrations done at %v, registrations at %v; each registration (%s) %s ms p50/p99/max\n",
			rc.closed.Round(time.Millisecond), rc.registered.Round(time.Millisecond), took, percentiles(rc.regTook))
	}
	if res.cpEnd, err = procstat.ReadMemory(cp.PID()); err != nil {
		return res, err
	}
	if res.benchEnd, err = procstat.ReadMemory(os.Getpid()); err != nil {
		return res, err
	}
	res.endResponses, res.endBytes = f.responses.Load(), f.bytes.Load()
	if c.light && c.rounds > 0 {
		fmt.Fprintf(out, "  churns: %d responses, %.0f KiB, to the %d light clients; %d streams ended by the control plane and opened again in all\n", res.endResponses-res.syncResponses, float64(res.endBytes-res.syncBytes)/1024, c.clients, f.reconnects.Load())
	}
	err = registration.CloseAll(regs, c.regConcurrency, 10*time.Second)
	regs = nil
	if err != nil {
		return res, withLog(fmt.Errorf("deregister: %w", err))
	}
	if res.warnings, res.warned, err = cp.Warnings(); err != nil {
		return res, err
	}
	for _, msg := range res.warnings {
		if devModeWarning(msg) {
			continue
		}
		fmt.Fprintf(out, "  control plane WARN/ERROR %d×: %.100s\n", res.warned[msg], msg)
	}
	return res, ctx.Err()
}

// fileChurn gives k WorkloadEntries, chosen at random, new addresses, and
// rewrites the files of their services.
func fileChurn(ctx context.Context, f *fleet, topo *topology, cfgDir string, pid, k int, rng *rand.Rand) (churn, error) {
	var ch churn
	n := 0
	for _, wes := range topo.wes {
		n += len(wes)
	}
	services := len(topo.wes)
	touched := make([]bool, services)
	for _, i := range rng.Perm(n)[:k] {
		svc, slot := i%services, i/services
		topo.wes[svc][slot] = topo.fileEndpoint()
		touched[svc] = true
	}
	collectOwnGarbage()
	cpu0, err := procstat.CPU(pid)
	if err != nil {
		return ch, err
	}
	own0, err := procstat.CPU(os.Getpid())
	if err != nil {
		return ch, err
	}
	start := time.Now()
	done := f.expect(topo.want(), start)
	for svc, t := range touched {
		if t {
			if err := topo.writeService(cfgDir, svc); err != nil {
				return ch, err
			}
			ch.files++
		}
	}
	if ch.prop, _, err = f.wait(ctx, done); err != nil {
		return ch, err
	}
	if ch.ownCPU, err = cpuSince(os.Getpid(), own0); err != nil {
		return ch, err
	}
	ch.cpu, err = cpuSince(pid, cpu0)
	return ch, err
}

// regChurn swaps the registered instances old (k of them; registered
// first, untimed, when there are none yet) for k new ones, and returns
// the new ones.
func regChurn(ctx context.Context, f *fleet, topo *topology, ch *controlchannel.Channel, pid int, old []*registration.Registration, k, concurrency int, regDial bool) (churn, []*registration.Registration, error) {
	var res churn
	services := len(topo.wes)
	instances := func() []*registrypb.Instance {
		for svc := range topo.regs {
			topo.regs[svc] = nil
		}
		insts := make([]*registrypb.Instance, k)
		for j := range insts {
			e := topo.regEndpoint()
			topo.regs[j%services] = append(topo.regs[j%services], e)
			insts[j] = instance(j%services, e)
		}
		return insts
	}
	if old == nil {
		base, err := registration.RegisterAll(ctx, ch, instances(), concurrency)
		if err != nil {
			return res, nil, err
		}
		done := f.expect(topo.want(), time.Now())
		if _, _, err := f.wait(ctx, done); err != nil {
			registration.CloseAll(base, concurrency, time.Second)
			return res, nil, fmt.Errorf("before the churn, %d registrations: %w", k, err)
		}
		old = base
	}
	insts := instances()
	// The new instances' workloads have started: mesh.New dialled the
	// control plane and saw it answer before any server registers.
	var conns []*registration.Conn
	if !regDial {
		var err error
		if conns, err = registration.ConnectAll(ctx, ch, insts, concurrency); err != nil {
			return res, old, fmt.Errorf("connections of the new instances: %w", err)
		}
	}
	collectOwnGarbage()
	cpu0, err := procstat.CPU(pid)
	if err != nil {
		for _, c := range conns {
			c.Close()
		}
		return res, old, err
	}
	own0, err := procstat.CPU(os.Getpid())
	if err != nil {
		return res, old, err
	}
	start := time.Now()
	done := f.expect(topo.want(), start)
	var (
		regs           []*registration.Registration
		regErr, clsErr error
		closed         = make(chan struct{})
	)
	go func() {
		defer close(closed)
		clsErr = registration.CloseAll(old, concurrency, 10*time.Second)
		res.closed = time.Since(start)
	}()
	if regDial {
		regs, regErr = registration.RegisterAll(ctx, ch, insts, concurrency)
	} else {
		regs, regErr = registration.RegisterOver(ctx, conns, insts, concurrency)
	}
	res.registered = time.Since(start)
	for _, r := range regs {
		if r != nil {
			res.regTook = append(res.regTook, r.Took)
		}
	}
	<-closed
	res.acked = time.Since(start)
	res.changes = 2 * k
	if err := errors.Join(regErr, clsErr); err != nil {
		return res, regs, err
	}
	if res.prop, _, err = f.wait(ctx, done); err != nil {
		return res, regs, err
	}
	if res.ownCPU, err = cpuSince(os.Getpid(), own0); err != nil {
		return res, regs, err
	}
	res.cpu, err = cpuSince(pid, cpu0)
	return res, regs, err
}

func cpuSince(pid int, cpu0 time.Duration) (time.Duration, error) {
	cpu1, err := procstat.CPU(pid)
	return cpu1 - cpu0, err
}

// devModeWarning reports whether msg is one of the warnings the control
// plane logs because of the flags the benchmark runs it with.
func devModeWarning(msg string) bool {
	for _, p := range []string{"ca: insecure development mode", "ca: signed without a token", "INSECURE: "} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// percentiles formats the p50, p99 and max of ds in ms.
func percentiles(ds []time.Duration) string {
	q := func(p float64) float64 { return summary.Quantile(ds, p, ms) }
	return fmt.Sprintf("%.1f / %.1f / %.1f", q(0.5), q(0.99), q(1))
}

func printSummary(out io.Writer, c config, rs []result) {
	var initial, file, reg []time.Duration
	var fileCPU, regCPU, fileOwn, regOwn []float64
	var regChanges int
	for _, r := range rs {
		initial = append(initial, r.initial...)
		for _, ch := range r.file {
			file = append(file, ch.prop...)
			fileCPU = append(fileCPU, ms(ch.cpu))
			fileOwn = append(fileOwn, ms(ch.ownCPU))
		}
		for _, ch := range r.reg {
			reg = append(reg, ch.prop...)
			regCPU = append(regCPU, ms(ch.cpu))
			regOwn = append(regOwn, ms(ch.ownCPU))
			regChanges = ch.changes
		}
	}
	id := func(x float64) float64 { return x }
	fmt.Fprintf(out, "\nN=%d S=%d C=%d, churn %d endpoints; %d runs  (p50 / p99 / max over every client of every run and round)\n", c.n, c.services, c.clients, c.churnSize(), len(rs))
	fmt.Fprintf(out, "  %-52s %s\n", "initial sync, each client (ms)", percentiles(initial))
	if len(file) > 0 {
		fmt.Fprintf(out, "  %-52s %s\n", "file churn propagation (ms)", percentiles(file))
		lo, med, hi := summary.Stats(fileCPU, id)
		fmt.Fprintf(out, "  %-52s %.0f / %.0f / %.0f  (min / median / max)\n", "control-plane CPU per file churn (ms)", lo, med, hi)
		lo, med, hi = summary.Stats(fileOwn, id)
		fmt.Fprintf(out, "  %-52s %.0f / %.0f / %.0f  (min / median / max)\n", "this process's CPU per file churn (ms)", lo, med, hi)
	}
	if len(reg) > 0 {
		fmt.Fprintf(out, "  %-52s %s\n", "registration churn propagation (ms)", percentiles(reg))
		lo, med, hi := summary.Stats(regCPU, id)
		fmt.Fprintf(out, "  %-52s %.0f / %.0f / %.0f  (min / median / max; %.0f µs per registry change at the median)\n",
			"control-plane CPU per registration churn (ms)", lo, med, hi, med*1000/float64(regChanges))
		lo, med, hi = summary.Stats(regOwn, id)
		fmt.Fprintf(out, "  %-52s %.0f / %.0f / %.0f  (min / median / max)\n", "this process's CPU per registration churn (ms)", lo, med, hi)
	}
	row := func(name string, f func(r result) float64) {
		lo, med, hi := summary.Stats(rs, f)
		fmt.Fprintf(out, "  %-52s %.1f / %.1f / %.1f  (min / median / max)\n", name, lo, med, hi)
	}
	row("control-plane RSS after the initial sync (MiB)", func(r result) float64 { return mib(r.cpSynced.RSS) })
	row("control-plane RSS at the end (MiB)", func(r result) float64 { return mib(r.cpEnd.RSS) })
	row("control-plane peak RSS (MiB)", func(r result) float64 { return mib(r.cpEnd.Peak) })
	row("this process's RSS after the initial sync (MiB)", func(r result) float64 { return mib(r.benchSynced.RSS) })
	row("this process's RSS at the end (MiB)", func(r result) float64 { return mib(r.benchEnd.RSS) })
	row("this process's live heap per client after the sync (KiB)", func(r result) float64 { return r.heapPerClient(c.clients) })
}

// collectOwnGarbage runs this process's GC before a churn's clock
// starts, as testing.B does before a benchmark: what the previous phase
// left (the registrations' connections and TLS handshakes, closed
// streams) is this harness's, and its collection during the next churn
// took CPU from the clients being measured. Real clients are processes of
// their own.
func collectOwnGarbage() { runtime.GC() }

// liveHeap is the heap in use just after a garbage collection.
func liveHeap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// heapPerClient is the live heap the clients' sync added, per client, in
// KiB.
func (r result) heapPerClient(clients int) float64 {
	return (float64(r.heapSynced) - float64(r.heapBefore)) / 1024 / float64(clients)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }
