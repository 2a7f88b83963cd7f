//go:build linux

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/bench/internal/procstat"
)

// program is one child program to measure.
type program struct {
	name string
	pkg  string   // under the module, "./bench/rss/internal/plainservice"
	tags []string // build tags
	load bool     // whether it serves and calls, and so can be loaded
	bin  string
	args []string
	env  []string
}

// sample is what one run of a program measured.
type sample struct {
	idle   procstat.Memory // after start and one call of each transport, and -settle
	loaded int64           // the most VmRSS seen while under load
	after  procstat.Memory // at the end of the load, VmHWM included
	calls  string          // calls of each transport during the load
}

// child is a running program, talking to its parent a line at a time.
type child struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan string // its stdout; closed at EOF
	log   string
}

// start runs p with its stderr in a file of dir, and waits for its
// "ready".
func start(ctx context.Context, p *program, dir string, run int) (*child, error) {
	c := &child{cmd: exec.Command(p.bin, p.args...), lines: make(chan string, 16), log: filepath.Join(dir, fmt.Sprintf("%s-%d.log", p.name, run))}
	c.cmd.Env = append(os.Environ(), p.env...)
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	logf, err := os.Create(c.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close() // the child holds its own descriptor
	c.cmd.Stderr = logf
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := c.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			c.lines <- sc.Text()
		}
		close(c.lines)
	}()
	if _, err := c.expect(ctx, "ready", 90*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

// expect waits up to timeout for a line starting with word and returns
// the rest of it.
func (c *child) expect(ctx context.Context, word string, timeout time.Duration) (string, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case line, ok := <-c.lines:
		if !ok {
			return "", fmt.Errorf("exited before %q (log: %s)", word, c.log)
		}
		rest, found := strings.CutPrefix(line, word)
		if !found {
			return "", fmt.Errorf("said %q, want %q (log: %s)", line, word, c.log)
		}
		return strings.TrimSpace(rest), nil
	case <-t.C:
		return "", fmt.Errorf("no %q within %v (log: %s)", word, timeout, c.log)
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// stop closes the child's stdin, which ends it cleanly, and kills it if
// it has not exited within 15s.
func (c *child) stop() {
	c.in.Close()
	done := make(chan struct{})
	go func() {
		c.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
}

// measure runs p once: its memory idle after settle, then, if it can be
// loaded, while it loads itself for loadFor with conc calls of each
// transport in flight, sampled every 100ms, and at the end of the load.
func measure(ctx context.Context, p *program, dir string, run int, settle, loadFor time.Duration, conc int) (sample, error) {
	var s sample
	c, err := start(ctx, p, dir, run)
	if err != nil {
		return s, err
	}
	defer c.stop()
	pid := c.cmd.Process.Pid
	select {
	case <-time.After(settle):
	case <-ctx.Done():
		return s, ctx.Err()
	}
	if s.idle, err = procstat.ReadMemory(pid); err != nil {
		return s, err
	}
	if !p.load {
		s.loaded, s.after = s.idle.RSS, s.idle
		return s, nil
	}
	if _, err := fmt.Fprintf(c.in, "load %v %d\n", loadFor, conc); err != nil {
		return s, err
	}
	done := make(chan struct{})
	var calls string
	var loadErr error
	go func() {
		calls, loadErr = c.expect(ctx, "loaded", loadFor+30*time.Second)
		close(done)
	}()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
sampling:
	for {
		select {
		case <-tick.C:
			if m, err := procstat.ReadMemory(pid); err == nil {
				s.loaded = max(s.loaded, m.RSS)
			}
		case <-done:
			break sampling
		}
	}
	if loadErr != nil {
		return s, loadErr
	}
	s.calls = calls
	if s.after, err = procstat.ReadMemory(pid); err != nil {
		return s, err
	}
	s.loaded = max(s.loaded, s.after.RSS)
	return s, nil
}
