package interop_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshlet/meshlet/meshtest"
)

// The programs of other languages that the tests run, and how they are
// started: servers that print their port and serve until their stdin
// ends, and clients that print one JSON line per call.

// install is the fix a missing program's failure names.
const install = "run scripts/install-interop from the repository root (as root, or with sudo without a password)"

// python is Debian's python3, which python3-grpcio is for; a pyenv or venv
// python3 first on PATH would not have it.
const python = "/usr/bin/python3"

// language is a gRPC implementation the programs are written for.
type language struct {
	name string
	// kind is how the control plane counts the language's xDS clients
	// on /metrics (xdsserver.ClientKind).
	kind string
	// check says why the language's programs cannot run, or nil.
	check func() error
	// command is the argv that runs program ("client" or "server").
	command func(program string) []string
	// tlsControlPlane: the client reaches the control plane's main port
	// with gRPC's tls channel credentials (gRFC A65) and its SVID, rather
	// than the read-only plaintext port.
	tlsControlPlane bool
	// earlyDeadlines: the client ends a call that a route's timeout
	// (xDS max_stream_duration) bounds before that timeout, for the
	// reason earlyDeadlinesWhy.
	earlyDeadlines    bool
	earlyDeadlinesWhy string
}

var (
	pythonLang = language{
		name:  "python",
		kind:  "grpc",
		check: checkPython,
		command: func(program string) []string {
			return []string{python, filepath.Join("python", program+".py")}
		},
		// Measured here: with max_stream_duration 0.5s, 2s and 3s,
		// python3-grpcio 1.51.1 ends the call with DEADLINE_EXCEEDED after
		// about 0ms, 0.89s and 1.25s; grpc-js and gRPC-Go after the
		// duration.
		earlyDeadlines:    true,
		earlyDeadlinesWhy: "gRPC C-core 1.51 (python3-grpcio) ends calls early under an xDS max_stream_duration",
	}
	nodeLang = language{
		name:  "node",
		kind:  "grpc",
		check: checkNode,
		command: func(program string) []string {
			return []string{"node", filepath.Join("node", program+".js")}
		},
	}
	// goLang is plain gRPC-Go (grpcgo/): its xDS client and nothing of
	// meshlet's library. It has only a client.
	goLang = language{
		name:  "grpc-go",
		kind:  "grpc-go",
		check: checkGo,
		command: func(program string) []string {
			return []string{filepath.Join(binDir, "grpcgo-"+program)}
		},
		tlsControlPlane: true,
	}
	clientLanguages = []language{goLang, pythonLang, nodeLang}
)

var (
	pythonOnce sync.Once
	pythonErr  error
)

// checkPython checks that /usr/bin/python3 imports grpc.
func checkPython() error {
	pythonOnce.Do(func() {
		out, err := exec.Command(python, "-c", "import grpc, sys; sys.stdout.write(grpc.__version__)").CombinedOutput()
		if err != nil {
			pythonErr = fmt.Errorf("%s cannot import grpc (%v: %s): %s", python, err, bytes.TrimSpace(out), install)
		}
	})
	return pythonErr
}

var (
	goOnce sync.Once
	goErr  error
)

// checkGo builds grpcgo/ once per test binary.
func checkGo() error {
	goOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(binDir, "grpcgo-client"), "./grpcgo").CombinedOutput()
		if err != nil {
			goErr = fmt.Errorf("go build ./interop/grpcgo: %v\n%s", err, out)
		}
	})
	return goErr
}

// checkNode checks that node runs and that node/node_modules was installed
// from node/package-lock.json as it is now (install-interop's stamp).
func checkNode() error {
	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node is not on PATH: install Node.js 20 or later, then %s", install)
	}
	lock, err := os.ReadFile(filepath.Join("node", "package-lock.json"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(lock)
	stamp, err := os.ReadFile(filepath.Join("node", "node_modules", ".meshlet-lock.sha256"))
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("interop/node/node_modules is not installed: %s", install)
	case err != nil:
		return err
	case strings.TrimSpace(string(stamp)) != hex.EncodeToString(sum[:]):
		return fmt.Errorf("interop/node/node_modules was installed from another package-lock.json: %s", install)
	}
	return nil
}

// need fails the test, never skips it, when lang's programs cannot run.
func need(t testing.TB, lang language) {
	t.Helper()
	if err := lang.check(); err != nil {
		t.Fatalf("interop: %s: %v", lang.name, err)
	}
}

// process is a running program. Its output (stdout past what the test
// reads, and stderr) goes to the test log when the test fails.
type process struct {
	name  string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines *bufio.Scanner     // stdout
	log   meshtest.LogBuffer // stderr, and stdout lines as they are read
	done  chan struct{}      // closed when cmd.Wait returns
	err   error              // cmd.Wait's, once done is closed
}

// start runs argv with env added, bound to the test's context: it is
// stopped (SIGTERM, then SIGKILL after 3s) when the test ends, and its
// output is logged if the test failed.
func start(t testing.TB, name string, env []string, argv ...string) *process {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 3 * time.Second
	p := &process{name: name, cmd: cmd, done: make(chan struct{})}
	cmd.Stderr = &p.log
	var err error
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.lines = bufio.NewScanner(stdout)
	if err := cmd.Start(); err != nil {
		t.Fatalf("interop: start %s: %v", name, err)
	}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stdin.Close() // the programs end when their stdin does
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("output of %s (%s):\n%s", name, strings.Join(argv, " "), tail(p.log.String(), 30))
		}
	})
	return p
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) <= n {
		return s
	}
	return fmt.Sprintf("[%d lines before]\n%s", len(lines)-n, strings.Join(lines[len(lines)-n:], "\n"))
}

// readLines reads n lines of the process's stdout within timeout. It
// fails the test if the process ends first, or the time runs out; then
// the process is killed.
func (p *process) readLines(t testing.TB, n int, timeout time.Duration) []string {
	t.Helper()
	got := make(chan []string, 1)
	go func() {
		var lines []string
		for len(lines) < n && p.lines.Scan() {
			lines = append(lines, p.lines.Text())
			fmt.Fprintf(&p.log, "stdout: %s\n", p.lines.Text())
		}
		got <- lines
	}()
	select {
	case lines := <-got:
		if len(lines) < n {
			<-p.done
			t.Fatalf("interop: %s ended (%v) after %d of %d lines of output", p.name, p.err, len(lines), n)
		}
		return lines
	case <-time.After(timeout):
		p.cmd.Process.Kill()
		<-got
		t.Fatalf("interop: %s wrote no %d lines of output within %v", p.name, n, timeout)
		return nil
	}
}

// finish closes the process's stdin and waits (bounded) until it exits,
// failing the test if it does not exit 0.
func (p *process) finish(t testing.TB) {
	t.Helper()
	p.stdin.Close()
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		t.Fatalf("interop: %s did not exit within 10s of its stdin's end", p.name)
	}
	if p.err != nil {
		t.Fatalf("interop: %s: %v", p.name, p.err)
	}
}

// server is a plain server of another language, outside the mesh.
type server struct {
	lang    language
	version string
	port    int
	p       *process
}

// calls is how many calls the server has logged.
func (s server) calls() int {
	n := 0
	for _, l := range strings.Split(s.p.log.String(), "\n") {
		if strings.HasPrefix(l, "call ") {
			n++
		}
	}
	return n
}

// serverOptions are how a plain server answers.
type serverOptions struct {
	fail  bool          // every call UNAVAILABLE
	delay time.Duration // before every answer
}

// startServer starts lang's plain Greeter server of version on a free
// loopback port until the test ends.
func startServer(t testing.TB, lang language, version string, o serverOptions) server {
	t.Helper()
	need(t, lang)
	argv := append(lang.command("server"), "--version", version)
	if o.fail {
		argv = append(argv, "--fail")
	}
	if o.delay > 0 {
		argv = append(argv, "--delay", strconv.FormatFloat(o.delay.Seconds(), 'f', -1, 64))
	}
	p := start(t, lang.name+" server "+version, nil, argv...)
	line := p.readLines(t, 1, 15*time.Second)[0]
	var ready struct{ Port int }
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Port == 0 {
		t.Fatalf("interop: %s server printed %q, want {\"port\": N}", lang.name, line)
	}
	return server{lang: lang, version: version, port: ready.Port, p: p}
}

// callResult is one line of a client's output.
type callResult struct {
	OK       bool    `json:"ok"`
	Version  string  `json:"version"`
	Instance string  `json:"instance"`
	Code     string  `json:"code"`
	Message  string  `json:"message"`
	MS       float64 `json:"ms"`
}

// clientOptions are a client run's settings.
type clientOptions struct {
	count    int
	metadata map[string]string
	timeout  time.Duration // per call; default 5s
	// ready bounds the wait for a ready channel; default 15s.
	ready time.Duration
	// plainCreds makes the client use insecure channel credentials
	// instead of xDS ones (whose fallback is insecure).
	plainCreds bool
	// interval is the pause between calls; callsPerChannel > 0 makes a
	// new channel, with a connection of its own, every that many calls.
	interval        time.Duration
	callsPerChannel int
}

// client is a running client of another language.
type client struct {
	*process
	lang     language
	n        int
	interval time.Duration
}

// startClient runs lang's client against target with the bootstrap file,
// making o.count calls, and keeps it, with its xDS stream, until results
// is called.
func startClient(t testing.TB, lang language, bootstrap, target string, o clientOptions) *client {
	t.Helper()
	need(t, lang)
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	if o.ready == 0 {
		o.ready = 15 * time.Second
	}
	argv := append(lang.command("client"), "--target", target, "--count", strconv.Itoa(o.count), "--hold",
		"--timeout", strconv.FormatFloat(o.timeout.Seconds(), 'f', -1, 64),
		"--ready-timeout", strconv.FormatFloat(o.ready.Seconds(), 'f', -1, 64))
	for k, v := range o.metadata {
		argv = append(argv, "--metadata", k+"="+v)
	}
	if o.interval > 0 {
		argv = append(argv, "--interval", strconv.FormatFloat(o.interval.Seconds(), 'f', -1, 64))
	}
	if o.callsPerChannel > 0 {
		argv = append(argv, "--calls-per-channel", strconv.Itoa(o.callsPerChannel))
	}
	if !o.plainCreds {
		argv = append(argv, "--xds-creds")
	}
	p := start(t, lang.name+" client of "+target, []string{"GRPC_XDS_BOOTSTRAP=" + bootstrap}, argv...)
	return &client{process: p, lang: lang, n: o.count, interval: o.interval}
}

// results reads the client's n results, within a bound that allows every
// call its timeout.
func (c *client) results(t testing.TB, timeout time.Duration) []callResult {
	t.Helper()
	lines := c.readLines(t, c.n, 30*time.Second+time.Duration(c.n)*(timeout+c.interval))
	out := make([]callResult, len(lines))
	for i, l := range lines {
		if err := json.Unmarshal([]byte(l), &out[i]); err != nil {
			t.Fatalf("interop: %s client: line %d %q: %v", c.lang.name, i+1, l, err)
		}
	}
	return out
}

// tally counts results by version, and failures by code.
type tally struct {
	versions  map[string]int
	instances map[string]int
	failures  map[string]int
	failed    int
	last      callResult // the last failure
}

func count(results []callResult) tally {
	t := tally{versions: map[string]int{}, instances: map[string]int{}, failures: map[string]int{}}
	for _, r := range results {
		if !r.OK {
			t.failed++
			t.failures[r.Code]++
			t.last = r
			continue
		}
		t.versions[r.Version]++
		t.instances[r.Instance]++
	}
	return t
}

func (t tally) String() string {
	s := fmt.Sprintf("versions %v", t.versions)
	if t.failed > 0 {
		s += fmt.Sprintf(", %d failed %v (last: %s %q)", t.failed, t.failures, t.last.Code, t.last.Message)
	}
	return s
}
