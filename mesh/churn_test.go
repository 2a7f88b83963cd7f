package mesh_test

import (
	"net/http"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/meshtest"
)

// load runs steady traffic from callers goroutines into a tally until
// stopped, bounded by a count per caller.
type load struct {
	stop  atomic.Bool
	wg    sync.WaitGroup
	mu    sync.Mutex
	calls []result
}

type result struct {
	at      time.Time
	version string
	addr    string
	err     error
}

func startLoad(t *testing.T, c interface {
	call() (string, string, error)
}, callers int) *load {
	l := &load{}
	for range callers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; i < 200000 && !l.stop.Load(); i++ {
				v, a, err := c.call()
				l.mu.Lock()
				l.calls = append(l.calls, result{time.Now(), v, a, err})
				l.mu.Unlock()
			}
		}()
	}
	t.Cleanup(l.end)
	return l
}

func (l *load) end() {
	l.stop.Store(true)
	l.wg.Wait()
}

// runPast waits until the calls have run for d after t0: until a call
// ends d or more after it. A test that must see traffic go on through a
// span (an outage, the time after a stop) waits for this, not for the
// clock, so that it judges calls that ran, however slow the machine.
func (l *load) runPast(t testing.TB, t0 time.Time, d time.Duration, what string) {
	t.Helper()
	meshtest.WaitUntil(t, d+15*time.Second, what, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.calls) > 0 && l.calls[len(l.calls)-1].at.Sub(t0) >= d
	})
}

// since returns the results after t0.
func (l *load) since(t0 time.Time) []result {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []result
	for _, r := range l.calls {
		if !r.at.Before(t0) {
			out = append(out, r)
		}
	}
	return out
}

func TestEndpointChurn(t *testing.T) {
	for _, kind := range serverKinds {
		t.Run(kind.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{
				"greeter-rules.yaml": greeterRules,
				"greeter-route.yaml": splitRoute(100, 0),
			})
			a := startGreeterWith(t, cp.XDSAddr(), "v1", nil, kind.opts...)
			client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
			waitServing(t, client, "v1")
			traffic := startLoad(t, grpcCaller(t, client), 4)
			parent := t // instances started in a subtest outlive it

			t.Run("new instance gets traffic within 2s", func(t *testing.T) {
				checkNewInstance(t, traffic, func() string { return startGreeterWith(parent, cp.XDSAddr(), "v1", nil, kind.opts...).addr })
			})
			t.Run("graceful stop fails no RPC", func(t *testing.T) {
				checkGracefulStop(t, traffic, a.addr, a.server.GracefulStop)
			})
			t.Run("abrupt stop recovers within 2s", func(t *testing.T) {
				child, childAddr := startChild(parent, cp.XDSAddr(), kind.name, "v1")
				checkAbruptStop(t, traffic, child, childAddr)
			})
		})
	}
}

// checkNewInstance starts an instance and checks that traffic reaches it
// within 2s.
func checkNewInstance(t *testing.T, traffic *load, start func() (addr string)) {
	t.Helper()
	started := time.Now()
	addr := start()
	var took time.Duration
	meshtest.WaitUntil(t, 5*time.Second, "the new instance to get traffic", func() bool {
		for _, r := range traffic.since(started) {
			if r.addr == addr {
				took = r.at.Sub(started)
				return true
			}
		}
		return false
	})
	t.Logf("new instance answered %v after it started", took)
	if took > 2*time.Second {
		t.Errorf("new instance got traffic after %v, want within 2s", took)
	}
}

// checkGracefulStop stops the instance at addr with stop, under traffic,
// and checks that no call failed and none reached it after it stopped.
func checkGracefulStop(t *testing.T, traffic *load, addr string, stop func()) {
	t.Helper()
	began := time.Now()
	stop()
	stopped := time.Now()
	traffic.runPast(t, stopped, 300*time.Millisecond, "300ms of calls after the stop")
	rs := traffic.since(began)
	failed, after := 0, 0
	for _, r := range rs {
		if r.err != nil {
			failed++
			t.Logf("failed: %v", r.err)
		}
		if r.addr == addr && r.at.After(stopped) {
			after++
		}
	}
	t.Logf("graceful stop took %v; %d calls during and after it, %d failed", stopped.Sub(began), len(rs), failed)
	if failed > 0 {
		t.Errorf("%d calls failed during a graceful stop, want 0", failed)
	}
	if after > 0 {
		t.Errorf("%d calls reached the stopped instance after it stopped", after)
	}
}

// checkAbruptStop waits for traffic to reach the child at addr, kills it
// as a crash would, and checks that at most a handful of calls fail, none
// after 2s.
func checkAbruptStop(t *testing.T, traffic *load, child *exec.Cmd, addr string) {
	t.Helper()
	meshtest.WaitUntil(t, 5*time.Second, "the child instance to get traffic", func() bool {
		for _, r := range traffic.since(time.Now().Add(-200 * time.Millisecond)) {
			if r.err == nil && r.addr == addr {
				return true
			}
		}
		return false
	})
	killed := time.Now()
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	traffic.runPast(t, killed, 2500*time.Millisecond, "2.5s of calls after the kill")
	early, late, total := 0, 0, 0
	for _, r := range traffic.since(killed) {
		total++
		if r.err == nil {
			continue
		}
		if r.at.Sub(killed) < 2*time.Second {
			early++
		} else {
			late++
		}
	}
	t.Logf("abrupt stop: %d calls in 2.5s after the kill, %d failed in the first 2s, %d after", total, early, late)
	if early > 5 {
		t.Errorf("%d calls failed after an abrupt stop, want at most a handful (5)", early)
	}
	if late > 0 {
		t.Errorf("%d calls failed more than 2s after an abrupt stop, want 0", late)
	}
}

type callerFunc func() (string, string, error)

func (f callerFunc) call() (string, string, error) { return f() }

// grpcCaller makes one RPC to the greeter with c, and says which version
// and instance answered.
func grpcCaller(t testing.TB, c greeterpb.GreeterClient) callerFunc {
	return func() (string, string, error) {
		r, err := call(t.Context(), c, "")
		return r.GetVersion(), r.GetInstance(), err
	}
}

// httpCaller makes one request to the greeter with c, and says which
// version and instance answered.
func httpCaller(t testing.TB, c *http.Client) callerFunc {
	return func() (string, string, error) {
		r, err := httpCall(t.Context(), c, "/", "")
		return r.version, r.instance, err
	}
}
