package examples_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSeparateProcesses runs the README's separate-process setup as a user
// would: the control-plane binary on the sample config, two greeter
// servers and a client, each its own process, trusting the control plane
// through its root file. The 90/10 split is counted over 1,000 calls.
func TestSeparateProcesses(t *testing.T) {
	bin := t.TempDir()
	for _, pkg := range []string{"../cmd/meshlet-controlplane", "./greeter-server", "./greeter-client"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	state := t.TempDir()
	xds, admin := freeAddr(t), freeAddr(t)
	cp := start(t, filepath.Join(bin, "meshlet-controlplane"), nil,
		"--config-dir", "config", "--ca-tokens-file", "tokens.yaml", "--state-dir", state,
		"--xds-address", xds, "--admin-address", admin)
	roots := filepath.Join(state, "ca", "root-cert.pem")
	cp.waitFor(t, "control plane serving", regexp.QuoteMeta("roots="+roots))
	env := []string{"MESHLET_CONTROL_PLANE=" + xds, "MESHLET_CONTROL_PLANE_ROOTS=" + roots}

	for i, version := range []string{"v1", "v2"} {
		s := start(t, filepath.Join(bin, "greeter-server"), append(env, "MESHLET_CA_TOKEN=example-greeter-token"),
			"--version", version, "--listen", "127.0.0.1:"+strconv.Itoa(freePort(t)))
		s.waitFor(t, fmt.Sprintf("server %d", i), "greeter "+version+" serving on .* as spiffe://cluster.local/ns/default/sa/greeter")
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	client := exec.CommandContext(ctx, filepath.Join(bin, "greeter-client"), "--calls", "1000")
	client.Env = append(append(os.Environ(), env...), "MESHLET_CA_TOKEN=example-client-token")
	out, err := client.CombinedOutput()
	t.Logf("greeter-client:\n%s", out)
	if err != nil {
		t.Fatalf("greeter-client: %v", err)
	}
	v1 := regexp.MustCompile(`v1: (\d+) of 1000`).FindSubmatch(out)
	if v1 == nil || !strings.Contains(string(out), "failed: 0") {
		t.Fatalf("unexpected output")
	}
	if n, _ := strconv.Atoi(string(v1[1])); n < 860 || n > 940 {
		t.Errorf("v1 got %d of 1000, want 900 ±40", n)
	}
}

type process struct {
	lines chan string
	name  string
}

// start runs bin with args until the test ends, collecting its output.
func start(t *testing.T, bin string, env []string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	p := &process{lines: make(chan string, 1000), name: filepath.Base(bin)}
	go func() {
		defer close(p.lines)
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		r.Close()
	})
	return p
}

// waitFor reads p's output until a line matches pattern.
func (p *process) waitFor(t *testing.T, what, pattern string) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	timeout := time.After(60 * time.Second)
	var seen []string
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("%s (%s) exited before %s:\n%s", p.name, what, pattern, strings.Join(seen, "\n"))
			}
			seen = append(seen, line)
			if re.MatchString(line) {
				return
			}
		case <-timeout:
			t.Fatalf("%s (%s): no line matching %q in 60s:\n%s", p.name, what, pattern, strings.Join(seen, "\n"))
		}
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func freeAddr(t *testing.T) string { return "127.0.0.1:" + strconv.Itoa(freePort(t)) }
