//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// buildControlPlane builds cmd/meshlet-controlplane of the module in the
// working directory into dir. It returns the module's root directory and
// the binary's path.
func buildControlPlane(ctx context.Context, dir string) (root, bin string, err error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", "", errors.New("not inside the meshlet module: run from the repository (go run ./bench/registrations)")
	}
	root = filepath.Dir(gomod)
	bin = filepath.Join(dir, "meshlet-controlplane")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/meshlet-controlplane")
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return "", "", fmt.Errorf("go build ./cmd/meshlet-controlplane: %w", err)
	}
	return root, bin, nil
}

// controlPlane is a control-plane child process on loopback.
type controlPlane struct {
	cmd       *exec.Cmd
	xdsAddr   string
	adminAddr string
	logPath   string
	exited    chan struct{} // closed when the process has been waited for
	waitErr   error
}

// startControlPlane runs bin with an empty config directory (a valid
// config: services come from registrations alone) under dir, on free
// loopback ports, and returns once its /readyz says ready. Its log goes to
// a file under dir.
func startControlPlane(ctx context.Context, bin, dir, logLevel string) (*controlPlane, error) {
	cfgDir := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfgDir, 0o755); err != nil {
		return nil, err
	}
	var lastErr error
	// A free port found by listening can be taken before the child binds
	// it; try again with other ports then.
	for attempt := range 3 {
		cp, err := startOnce(ctx, bin, cfgDir, filepath.Join(dir, fmt.Sprintf("controlplane-%d.log", attempt)), logLevel)
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

func startOnce(ctx context.Context, bin, cfgDir, logPath, logLevel string) (*controlPlane, error) {
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
	cmd := exec.Command(bin,
		"--config-dir", cfgDir,
		"--xds-address", xdsAddr,
		"--admin-address", adminAddr,
		"--ca-insecure-dev",
		"--log-level", logLevel,
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The child dies with this process, however it ends.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	cp := &controlPlane{cmd: cmd, xdsAddr: xdsAddr, adminAddr: adminAddr, logPath: logPath, exited: make(chan struct{})}
	go func() {
		cp.waitErr = cmd.Wait()
		close(cp.exited)
	}()
	if err := cp.waitReady(ctx); err != nil {
		cp.stop()
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
func (cp *controlPlane) waitReady(ctx context.Context) error {
	client := &http.Client{Transport: &http.Transport{Proxy: nil}, Timeout: time.Second}
	defer client.CloseIdleConnections()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := client.Get("http://" + cp.adminAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-cp.exited:
			return fmt.Errorf("control plane exited before it was ready (%v); its log: %s", cp.waitErr, cp.logPath)
		case <-ctx.Done():
			return fmt.Errorf("control plane not ready (log: %s): %w", cp.logPath, ctx.Err())
		case <-tick.C:
		}
	}
}

func (cp *controlPlane) pid() int { return cp.cmd.Process.Pid }

// stop asks the control plane to shut down (SIGTERM), and kills it if it
// has not exited within 5s.
func (cp *controlPlane) stop() {
	cp.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cp.exited:
		return
	case <-time.After(5 * time.Second):
	}
	cp.cmd.Process.Kill()
	<-cp.exited
}
