package meshtest

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
	"testing"
	"time"
)

// Bounds on the waits for the programs that StartJaeger and StartPrometheus
// run. Each starts in about a second on a quiet machine; the bounds leave
// room for a loaded CI machine.
const (
	toolStartTimeout  = 60 * time.Second // one start until ready
	toolStopTimeout   = 10 * time.Second // SIGTERM until SIGKILL
	toolPollInterval  = 100 * time.Millisecond
	toolStartAttempts = 3 // fresh ports each time another process took one
)

// toolProcess is a program started by a test, its output in a log file
// whose tail goes into failure messages.
type toolProcess struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

// startTool starts path with args in dir, its output in dir/<name>.log.
func startTool(name, path, dir string, args ...string) (*toolProcess, error) {
	p := &toolProcess{name: name, log: filepath.Join(dir, name+".log"), done: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		return nil, fmt.Errorf("%s log: %w", name, err)
	}
	defer f.Close() // the child has its own copy
	p.cmd = exec.Command(path, args...)
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", path, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// stop ends the process and waits for it. An exit caused by our own signal
// is not an error.
func (p *toolProcess) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(toolStopTimeout):
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	return fmt.Errorf("did not stop within %v of SIGTERM; killed", toolStopTimeout)
}

// logTail returns the last lines of the process's log, for failure messages.
func (p *toolProcess) logTail() string {
	return fmt.Sprintf("\n--- %s log, last lines ---\n%s", p.name, tail(p.log, 30))
}

// errPortTaken says that a process exited because a port picked for it was
// taken in the meantime: starting again on other ports will do.
var errPortTaken = errors.New("a port was taken by another process")

// waitReady polls url until it answers 200, and fails when p exits first
// (with errPortTaken if its log says a port was in use) or the deadline
// passes.
func (p *toolProcess) waitReady(ctx context.Context, client *http.Client, url string) error {
	ctx, cancel := context.WithTimeout(ctx, toolStartTimeout)
	defer cancel()
	tick := time.NewTicker(toolPollInterval)
	defer tick.Stop()
	var last error
	for {
		select {
		case <-p.done:
			if strings.Contains(tail(p.log, 30), "address already in use") {
				return fmt.Errorf("%s exited: %w", p.name, errPortTaken)
			}
			return fmt.Errorf("%s exited before it was ready: %v", p.name, p.err)
		default:
		}
		if last = getOK(ctx, client, url); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %v", p.name, toolStartTimeout, last)
		case <-tick.C:
		}
	}
}

// getOK GETs url and wants 200.
func getOK(ctx context.Context, client *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}

// startToolOnFreePorts runs start with n free loopback ports until it
// succeeds, with fresh ports when the last ones were taken
// (errPortTaken) between picking and binding, and fails the test on any
// other error or after toolStartAttempts tries.
func startToolOnFreePorts(t testing.TB, what string, n int, start func(ports []int) error) {
	t.Helper()
	var err error
	for range toolStartAttempts {
		var ports []int
		if ports, err = freeLoopbackPorts(n); err != nil {
			t.Fatalf("meshtest: %s: free ports: %v", what, err)
		}
		if err = start(ports); !errors.Is(err, errPortTaken) {
			break
		}
		t.Logf("meshtest: %s: %v; trying other ports", what, err)
	}
	if err != nil {
		t.Fatalf("meshtest: %s: %v", what, err)
	}
}

// freeLoopbackPorts asks the kernel for n distinct free ports on
// 127.0.0.1, holding each open until it has them all. Another process can
// take one before our child binds it: startToolOnFreePorts tries again.
func freeLoopbackPorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// toolBinary finds program name: in $envVar (a directory) when set, else
// in the module root's .tools/bin when inTools, else on PATH. install
// is the fix to print when it is nowhere.
func toolBinary(name, envVar string, inTools bool, install string) (string, error) {
	if dir := os.Getenv(envVar); dir != "" {
		path := filepath.Join(dir, name)
		if err := isExecutable(path); err != nil {
			return "", fmt.Errorf("meshtest: %s=%s: %w: %s", envVar, dir, err, install)
		}
		return path, nil
	}
	var tried []string
	if inTools {
		if root, err := moduleRoot(); err == nil {
			path := filepath.Join(root, ".tools", "bin", name)
			if isExecutable(path) == nil {
				return path, nil
			}
			tried = append(tried, filepath.Dir(path))
		}
	}
	if path, err := exec.LookPath(name); err == nil {
		return path, nil
	}
	tried = append(tried, "PATH")
	return "", fmt.Errorf("meshtest: %s is not in %s: %s", name, strings.Join(tried, " or "), install)
}

func isExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("no %s", filepath.Base(path))
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}
