//go:build linux

// Package cpprocess runs cmd/meshlet-controlplane as a child process on
// loopback, so that a benchmark can read its CPU and memory apart from its
// own, or keep them out of what it measures.
package cpprocess

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/bench/internal/module"
)

// Build builds cmd/meshlet-controlplane of the module at root into dir and
// returns the binary's path.
func Build(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "meshlet-controlplane")
	return bin, module.Build(ctx, root, "./cmd/meshlet-controlplane", bin)
}

// Binary returns bin, the control-plane binary a benchmark was given, or,
// when bin is empty, one built from this module into dir (within 5
// minutes); what says which, for the benchmark's report.
func Binary(ctx context.Context, bin, dir string) (path, what string, err error) {
	if bin != "" {
		return bin, bin, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	root, err := module.Root(ctx)
	if err != nil {
		return "", "", err
	}
	if path, err = Build(ctx, root, dir); err != nil {
		return "", "", err
	}
	return path, "./cmd/meshlet-controlplane at " + module.Commit(ctx, root), nil
}

// Process is a control-plane child process on loopback.
type Process struct {
	XDSAddr   string // host:port of its gRPC port (xDS, registrations, CA)
	AdminAddr string
	LogPath   string // its stdout and stderr

	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has been waited for
	waitErr error
}

// Start runs bin with the config directory dir/config (made empty if it
// does not exist, a valid config: services come from registrations alone;
// a benchmark may write its config there first) on free loopback ports,
// with the flags args besides, and returns once its /readyz says ready.
// Its log goes to a file under dir.
func Start(ctx context.Context, bin, dir, logLevel string, args []string) (*Process, error) {
	cfgDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	// A free port found by listening can be taken before the child binds
	// it; try again with other ports then.
	for attempt := range 3 {
		cp, err := startOnce(ctx, bin, cfgDir, filepath.Join(dir, fmt.Sprintf("controlplane-%d.log", attempt)), logLevel, args)
		if err == nil {
			return cp, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, lastErr
}

func startOnce(ctx context.Context, bin, cfgDir, logPath, logLevel string, args []string) (*Process, error) {
	xdsAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	adminAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	cmd := exec.Command(bin, append([]string{
		"--config-dir", cfgDir,
		"--xds-address", xdsAddr,
		"--admin-address", adminAddr,
		"--log-level", logLevel,
	}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child dies with this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	cp := &Process{cmd: cmd, XDSAddr: xdsAddr, AdminAddr: adminAddr, LogPath: logPath, exited: make(chan struct{})}
	go func() {
		cp.waitErr = cmd.Wait()
		close(cp.exited)
	}()
	if err := cp.waitReady(ctx); err != nil {
		cp.Stop()
		return nil, err
	}
	return cp, nil
}

func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady polls the admin port's /readyz until it answers 200.
func (cp *Process) waitReady(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get("http://" + cp.AdminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-cp.exited:
			return fmt.Errorf("control plane exited before it was ready (%v); its log: %s", cp.waitErr, cp.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("control plane not ready (log: %s): %w", cp.LogPath, ctx.Err())
		case <-tick.C:
		}
	}
}

// PID is the process's ID.
func (cp *Process) PID() int { return cp.cmd.Process.Pid }

// Stop asks the control plane to shut down (SIGTERM), and kills it if it
// has not exited within 5s.
func (cp *Process) Stop() {
	cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.exited:
		return
	case <-time.After(5 * time.Second):
	}
	cp.cmd.Process.Kill()
	<-cp.exited
}

// Warnings returns the WARN and ERROR messages of the control plane's log
// (slog's text format), each with how many times it was logged, in the
// order first seen: refused registrations and xDS streams show there, with
// the reason in the line.
func (cp *Process) Warnings() ([]string, map[string]int, error) {
	data, err := os.ReadFile(cp.LogPath)
	if err != nil {
		return nil, nil, err
	}
	var order []string
	count := map[string]int{}
	for line := range strings.Lines(string(data)) {
		if !strings.Contains(line, " level=WARN ") && !strings.Contains(line, " level=ERROR ") {
			continue
		}
		_, msg, ok := strings.Cut(line, " msg=")
		if !ok {
			continue
		}
		if q, err := strconv.QuotedPrefix(msg); err == nil {
			msg, _ = strconv.Unquote(q)
		} else {
			msg, _, _ = strings.Cut(msg, " ")
		}
		if count[msg] == 0 {
			order = append(order, msg)
		}
		count[msg]++
	}
	return order, count, nil
}
