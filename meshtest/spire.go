package meshtest

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/wire"
)

// Bounds on every wait in this file. SPIRE starts in a few seconds on a
// quiet machine; the bounds leave room for a loaded CI machine.
const (
	spireStartTimeout   = 60 * time.Second // one process until healthy
	spireEntryTimeout   = 60 * time.Second // an entry until the agent serves it
	spireCommandTimeout = 20 * time.Second // one CLI call
	spireStopTimeout    = 10 * time.Second // SIGTERM until SIGKILL
	spirePollInterval   = 100 * time.Millisecond
	// Each fetch before the agent has the entry logs "No identity issued"
	// in the agent's log, and the agent syncs with the server every second.
	spireEntryPollInterval = 250 * time.Millisecond
)

// SPIRE is a real SPIRE server and agent started by [StartSPIRE]: the
// server on loopback, the agent's Workload API on a unix socket. Workloads
// of the test process get the SVIDs of the entries made with
// [SPIRE.CreateEntry] from the Workload API at [SPIRE.Addr].
//
// Its methods may be called from several goroutines.
type SPIRE struct {
	// TrustDomain is the trust domain of the server, "cluster.local" unless
	// [WithSPIRETrustDomain] says otherwise.
	TrustDomain string
	// SocketPath is the path of the agent's Workload API socket. Addr gives
	// it as an address for go-spiffe's workloadapi.WithAddr.
	SocketPath string
	// AgentID is the agent's SPIFFE ID, spiffe://<trust domain>/agent: the
	// parent of every entry that CreateEntry makes.
	AgentID string

	binDir       string
	dir          string
	serverSocket string
	server       *spireProcess
	agent        *spireProcess
}

// SPIREOption configures [StartSPIRE].
type SPIREOption interface{ apply(*spireOptions) }

type spireOptions struct {
	trustDomain string
}

type spireOptionFunc func(*spireOptions)

func (f spireOptionFunc) apply(o *spireOptions) { f(o) }

// WithSPIRETrustDomain sets the trust domain (default "cluster.local").
func WithSPIRETrustDomain(td string) SPIREOption {
	return spireOptionFunc(func(o *spireOptions) { o.trustDomain = td })
}

// StartSPIRE starts spire-server and spire-agent (version 1.13.3, found by
// [SPIREBinDir]) and returns when both are healthy and the agent has
// attested to the server. The test fails, and does not skip, when the
// binaries are missing. Both processes are stopped, and their files
// removed, when the test ends.
//
// The server listens on a free loopback port, keeps its data in sqlite and
// its keys in memory, and its CA lives 24h, so SVIDs may live up to 4h. The
// agent attests with a join token, trusts the server's bundle (fetched from
// the server, not insecure bootstrap) and attests workloads with the unix
// attestor. Both log at warn level (debug with MESHLET_TEST_LOG set) to
// files whose tails appear in failure messages.
func StartSPIRE(t testing.TB, opts ...SPIREOption) *SPIRE {
	t.Helper()
	o := spireOptions{trustDomain: wire.DefaultTrustDomain}
	for _, opt := range opts {
		opt.apply(&o)
	}
	td, err := spiffeid.TrustDomainFromString(o.trustDomain)
	if err != nil {
		t.Fatalf("meshtest: SPIRE trust domain %q: %v", o.trustDomain, err)
	}
	binDir, err := SPIREBinDir()
	if err != nil {
		t.Fatal(err)
	}
	// Unix socket paths are limited to about 108 bytes, and t.TempDir's
	// paths (named after the test) can be longer: use a short directory.
	dir, err := os.MkdirTemp("", "spire")
	if err != nil {
		t.Fatalf("meshtest: SPIRE temp dir: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("meshtest: remove SPIRE dir: %v", err)
		}
	})

	s := &SPIRE{
		TrustDomain:  td.Name(),
		SocketPath:   filepath.Join(dir, "agent.sock"),
		AgentID:      td.IDString() + "/agent",
		binDir:       binDir,
		dir:          dir,
		serverSocket: filepath.Join(dir, "server.sock"),
	}
	logLevel := "WARN"
	if os.Getenv("MESHLET_TEST_LOG") != "" {
		logLevel = "DEBUG"
	}

	for _, sub := range []string{"server-data", "agent-data"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatalf("meshtest: SPIRE dir: %v", err)
		}
	}
	port, err := freeLoopbackPort()
	if err != nil {
		t.Fatalf("meshtest: SPIRE server port: %v", err)
	}
	serverConf := fmt.Sprintf(`server {
	bind_address = "127.0.0.1"
	bind_port = %d
	socket_path = %q
	trust_domain = %q
	data_dir = %q
	log_level = %q
	ca_ttl = "24h"
	default_x509_svid_ttl = "1h"
	experimental {
		cache_reload_interval = "1s"
	}
}

plugins {
	DataStore "sql" {
		plugin_data {
			database_type = "sqlite3"
			connection_string = %q
		}
	}
	NodeAttestor "join_token" {
		plugin_data {}
	}
	KeyManager "memory" {
		plugin_data {}
	}
}
`, port, s.serverSocket, s.TrustDomain, filepath.Join(dir, "server-data"), logLevel,
		filepath.Join(dir, "server-data", "datastore.sqlite3"))
	serverConfPath := s.writeFile(t, "server.conf", serverConf)

	start := time.Now()
	s.server = s.startProcess(t, "spire-server", "run", "-config", serverConfPath)
	s.waitHealthy(t, s.server, "healthcheck", "-socketPath", s.serverSocket)
	t.Logf("meshtest: spire-server healthy on 127.0.0.1:%d after %v", port, time.Since(start).Round(time.Millisecond))

	bundle := s.serverCommand(t, "bundle", "show", "-format", "pem")
	bundlePath := s.writeFile(t, "bundle.pem", bundle)
	tokenOut := s.serverCommand(t, "token", "generate", "-spiffeID", s.AgentID, "-ttl", "600")
	token, ok := strings.CutPrefix(strings.TrimSpace(tokenOut), "Token: ")
	if !ok || token == "" {
		t.Fatalf("meshtest: spire-server token generate printed %q, want \"Token: <token>\"", tokenOut)
	}

	agentConf := fmt.Sprintf(`agent {
	data_dir = %q
	log_level = %q
	server_address = "127.0.0.1"
	server_port = %d
	socket_path = %q
	trust_bundle_path = %q
	trust_domain = %q
	join_token = %q
	experimental {
		sync_interval = "1s"
	}
}

plugins {
	NodeAttestor "join_token" {
		plugin_data {}
	}
	KeyManager "memory" {
		plugin_data {}
	}
	WorkloadAttestor "unix" {
		plugin_data {}
	}
}
`, filepath.Join(dir, "agent-data"), logLevel, port, s.SocketPath, bundlePath, s.TrustDomain, token)
	agentConfPath := s.writeFile(t, "agent.conf", agentConf)

	agentStart := time.Now()
	s.agent = s.startProcess(t, "spire-agent", "run", "-config", agentConfPath)
	s.waitHealthy(t, s.agent, "healthcheck", "-socketPath", s.SocketPath)
	t.Logf("meshtest: spire-agent healthy on %s after %v (SPIRE up in %v)", s.SocketPath,
		time.Since(agentStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
	return s
}

// Addr returns the agent's Workload API address ("unix:///..."), for
// go-spiffe's workloadapi.WithAddr.
func (s *SPIRE) Addr() string { return "unix://" + s.SocketPath }

// CreateEntry registers spiffeID for the test process: the entry's parent
// is the agent and its selector is unix:uid:<this process's uid>, so every
// process of this user gets it from the Workload API. ttl is the X509-SVID
// lifetime in whole seconds (zero means the server's default, 1h). SPIRE
// sets NotAfter to issue time + ttl and NotBefore 10s before issue time.
//
// CreateEntry returns once the agent serves an SVID for spiffeID, and fails
// the test if it does not within a minute. All entries are for the same
// uid, so with several entries a workload sees several SVIDs: pick one by
// ID (go-spiffe's workloadapi.WithDefaultX509SVIDPicker).
func (s *SPIRE) CreateEntry(t testing.TB, spiffeID string, ttl time.Duration) {
	t.Helper()
	id, err := spiffeid.FromString(spiffeID)
	if err != nil {
		t.Fatalf("meshtest: SPIRE entry %q: %v", spiffeID, err)
	}
	if id.TrustDomain().Name() != s.TrustDomain {
		t.Fatalf("meshtest: SPIRE entry %q: not in trust domain %q", spiffeID, s.TrustDomain)
	}
	if ttl < 0 || ttl%time.Second != 0 {
		t.Fatalf("meshtest: SPIRE entry %q: ttl %v is not a whole number of seconds", spiffeID, ttl)
	}
	args := []string{"entry", "create",
		"-parentID", s.AgentID,
		"-spiffeID", id.String(),
		"-selector", "unix:uid:" + strconv.Itoa(os.Getuid()),
	}
	if ttl > 0 {
		args = append(args, "-x509SVIDTTL", strconv.Itoa(int(ttl/time.Second)))
	}
	s.serverCommand(t, args...)

	start := time.Now()
	deadline := start.Add(spireEntryTimeout)
	var last error
	for time.Now().Before(deadline) {
		last = s.hasSVID(t.Context(), id)
		if last == nil {
			t.Logf("meshtest: SPIRE agent serves %s after %v", id, time.Since(start).Round(time.Millisecond))
			return
		}
		time.Sleep(spireEntryPollInterval)
	}
	t.Fatalf("meshtest: SPIRE agent does not serve %s after %v: %v%s", id, spireEntryTimeout, last, s.logTails())
}

// hasSVID asks the Workload API, once, whether it serves an SVID for id.
func (s *SPIRE) hasSVID(ctx context.Context, id spiffeid.ID) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	svids, err := workloadapi.FetchX509SVIDs(ctx, workloadapi.WithAddr(s.Addr()))
	if err != nil {
		return err
	}
	var got []string
	for _, svid := range svids {
		if svid.ID == id {
			return nil
		}
		got = append(got, svid.ID.String())
	}
	return fmt.Errorf("the Workload API serves %v", got)
}

// SPIREBinDir returns the directory that holds spire-server and
// spire-agent: $MESHLET_SPIRE_BIN when set, else .tools/bin in the root of
// the module that holds the working directory (where scripts/install-spire
// puts them), else the directory of spire-server on PATH.
func SPIREBinDir() (string, error) {
	const fix = "run scripts/install-spire from the meshlet repository (it builds SPIRE 1.13.3 into .tools/bin, about 6 minutes the first time), or set MESHLET_SPIRE_BIN to a directory that holds spire-server and spire-agent"
	if dir := os.Getenv("MESHLET_SPIRE_BIN"); dir != "" {
		if err := hasSPIREBinaries(dir); err != nil {
			return "", fmt.Errorf("meshtest: MESHLET_SPIRE_BIN=%s: %w: %s", dir, err, fix)
		}
		return dir, nil
	}
	var tried []string
	if root, err := moduleRoot(); err == nil {
		dir := filepath.Join(root, ".tools", "bin")
		if hasSPIREBinaries(dir) == nil {
			return dir, nil
		}
		tried = append(tried, dir)
	}
	if path, err := exec.LookPath("spire-server"); err == nil {
		dir := filepath.Dir(path)
		if hasSPIREBinaries(dir) == nil {
			return dir, nil
		}
	}
	tried = append(tried, "PATH")
	return "", fmt.Errorf("meshtest: spire-server and spire-agent are not in %s: %s", strings.Join(tried, " or "), fix)
}

func hasSPIREBinaries(dir string) error {
	for _, name := range []string{"spire-server", "spire-agent"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return fmt.Errorf("no %s", name)
		}
		if fi.IsDir() || fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not an executable file", name)
		}
	}
	return nil
}

// moduleRoot walks up from the working directory to the first go.mod.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// freeLoopbackPort asks the kernel for a free port on 127.0.0.1. Another
// process could take it before SPIRE binds it; the server's log says so if
// that happens.
func freeLoopbackPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	port := l.Addr().(*net.TCPAddr).Port
	return port, l.Close()
}

func (s *SPIRE) writeFile(t testing.TB, name, content string) string {
	t.Helper()
	path := filepath.Join(s.dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatalf("meshtest: SPIRE %s: %v", name, err)
	}
	return path
}

// Bundle returns the SPIRE server's trust bundle: what a meshlet control
// plane must trust (controlplane.WithTrustBundle) for workloads whose
// identity comes from this SPIRE to connect to it.
func (s *SPIRE) Bundle(t testing.TB) []*x509.Certificate {
	t.Helper()
	certs, err := certfile.Parse([]byte(s.serverCommand(t, "bundle", "show", "-format", "pem")))
	if err != nil {
		t.Fatalf("meshtest: SPIRE bundle: %v", err)
	}
	return certs
}

// serverCommand runs a spire-server CLI command against the server's
// socket and returns its standard output.
func (s *SPIRE) serverCommand(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.command(t.Context(), "spire-server", append(args, "-socketPath", s.serverSocket)...)
	if err != nil {
		t.Fatalf("meshtest: %v%s", err, s.logTails())
	}
	return out
}

// command runs a SPIRE CLI command, bounded in time, and returns its
// standard output, or an error with its output.
func (s *SPIRE) command(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, spireCommandTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err,
			strings.TrimSpace(stdout.String()+"\n"+stderr.String()))
	}
	return stdout.String(), nil
}

// spireProcess is a running spire-server or spire-agent.
type spireProcess struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

// startProcess starts a SPIRE binary with its output in <dir>/<name>.log,
// and stops it (SIGTERM, then SIGKILL, and waits) when the test ends.
func (s *SPIRE) startProcess(t testing.TB, name string, args ...string) *spireProcess {
	t.Helper()
	p := &spireProcess{name: name, log: filepath.Join(s.dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatalf("meshtest: %s log: %v", name, err)
	}
	defer f.Close() // the child has its own copy
	p.cmd = exec.Command(filepath.Join(s.binDir, name), args...)
	p.cmd.Dir = s.dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("meshtest: start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Errorf("meshtest: stop %s: %v", name, err)
		}
	})
	return p
}

// stop ends the process and waits for it. An exit caused by our own signal
// is not an error.
func (p *spireProcess) stop() error {
	select {
	case <-p.done:
		return nil // exited by itself; waitHealthy reports that
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(spireStopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("did not stop within %v of SIGTERM; killed", spireStopTimeout)
}

// waitHealthy polls `<p.name> args...` until it succeeds, and fails the
// test if p exits or the deadline passes first.
func (s *SPIRE) waitHealthy(t testing.TB, p *spireProcess, args ...string) {
	t.Helper()
	deadline := time.Now().Add(spireStartTimeout)
	var last error
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			t.Fatalf("meshtest: %s exited before it was healthy: %v%s", p.name, p.err, s.logTails())
		default:
		}
		if _, last = s.command(t.Context(), p.name, args...); last == nil {
			return
		}
		time.Sleep(spirePollInterval)
	}
	t.Fatalf("meshtest: %s not healthy after %v: %v%s", p.name, spireStartTimeout, last, s.logTails())
}

// logTails returns the last lines of the processes' logs, for failure
// messages.
func (s *SPIRE) logTails() string {
	var b strings.Builder
	for _, p := range []*spireProcess{s.server, s.agent} {
		if p == nil {
			continue
		}
		fmt.Fprintf(&b, "\n--- %s log, last lines ---\n%s", p.name, tail(p.log, 30))
	}
	return b.String()
}

func tail(path string, lines int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}
