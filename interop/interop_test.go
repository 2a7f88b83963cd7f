package interop_test

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

// TestInterop: plain gRPC-Go, Python (C-core) and Node (grpc-js) clients, with their own
// xDS clients and a bootstrap file, follow meshlet's control plane to
// meshlet Go servers and to plain Python and Node servers, with an 80/20
// split, a header match, retries past a failing endpoint and a route
// timeout; and none of them NACKs anything.
func TestInterop(t *testing.T) {
	for _, lang := range clientLanguages {
		need(t, lang) // fail at once, not in every subtest
	}
	started := time.Now()
	files := goBackendConfig()
	var backends []backend
	for _, lang := range []language{pythonLang, nodeLang} {
		b, config := startPlainBackend(t, lang)
		backends = append(backends, b)
		for name, content := range config {
			files[name] = content
		}
	}
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, files),
		controlplane.WithPlaintextXDSAddress("127.0.0.1:0"))
	backends = append([]backend{startGoBackend(t, cp)}, backends...)
	t.Logf("control plane and %d backends up in %v", len(backends), time.Since(started).Round(time.Millisecond))

	for _, lang := range clientLanguages {
		svid := agentSVID(t, cp, lang.name+"-client")
		run := func(t *testing.T, target string, o clientOptions) []callResult {
			t.Helper()
			// A bootstrap per run: a new node ID, so that its stream is
			// told from the last run's.
			bootstrap, nodeID := writeBootstrapFor(t, lang, cp, lang.name+"-client", svid, 0)
			c := startClient(t, lang, bootstrap, target, o)
			results := c.results(t, o.timeout)
			checkStream(t, cp, nodeID, lang.kind)
			c.finish(t)
			return results
		}
		for _, b := range backends {
			t.Run(lang.name+"-client/"+b.lang+"-servers", func(t *testing.T) {
				t.Run("split", func(t *testing.T) {
					// ±5 points is 4 standard deviations at 1,000 calls
					// (2.5 at 400, which six runs would fail 7% of the time).
					const n = 1000
					got := count(run(t, target(b.lang, "greeter"), clientOptions{count: n}))
					if got.failed > 0 {
						t.Fatalf("%d of %d calls failed: %v", got.failed, n, got)
					}
					v1 := 100 * float64(got.versions["v1"]) / n
					if math.Abs(v1-80) > 5 {
						t.Errorf("v1 got %.1f%% of %d calls, want 80 ±5 (%v)", v1, n, got)
					}
					t.Logf("80/20 over %d calls: v1 %.1f%%, v2 %.1f%%", n, v1, 100*float64(got.versions["v2"])/n)
				})
				t.Run("header match", func(t *testing.T) {
					const n = 50
					jason := count(run(t, target(b.lang, "match"), clientOptions{count: n, metadata: map[string]string{"end-user": "jason"}}))
					if jason.versions["v2"] != n {
						t.Errorf("end-user: jason: %v, want all %d calls to v2", jason, n)
					}
					other := count(run(t, target(b.lang, "match"), clientOptions{count: n, metadata: map[string]string{"end-user": "alice"}}))
					if other.versions["v1"] != n {
						t.Errorf("end-user: alice: %v, want all %d calls to v1", other, n)
					}
				})
				t.Run("retry", func(t *testing.T) {
					const n = 100
					before := b.calls("flaky", "fail")
					got := count(run(t, target(b.lang, "flaky"), clientOptions{count: n}))
					failing := b.calls("flaky", "fail") - before
					if got.failed > 0 || got.versions["ok"] != n {
						t.Errorf("%v, want all %d calls answered by the endpoint that works", got, n)
					}
					// Else the retries had nothing to outlast.
					if failing == 0 {
						t.Errorf("the failing endpoint got no calls")
					}
					t.Logf("%d calls, 0 failed; the failing endpoint failed %d attempts", n, failing)
				})
				t.Run("timeout", func(t *testing.T) {
					const n = 3
					results := run(t, target(b.lang, "slow"), clientOptions{count: n, timeout: 10 * time.Second})
					for i, r := range results {
						took := time.Duration(r.MS * float64(time.Millisecond))
						if r.OK || r.Code != "DEADLINE_EXCEEDED" {
							t.Errorf("call %d: %+v, want DEADLINE_EXCEEDED after the route's %v", i+1, r, routeTimeout)
						} else if took > routeTimeout+time.Second {
							t.Errorf("call %d ended after %v, want about the route's %v", i+1, took, routeTimeout)
						} else if took < routeTimeout-50*time.Millisecond {
							if lang.earlyDeadlines {
								t.Logf("call %d ended after %v, before the route's %v: %s", i+1, took, routeTimeout, lang.earlyDeadlinesWhy)
							} else {
								t.Errorf("call %d ended after %v, want about the route's %v", i+1, took, routeTimeout)
							}
						}
					}
					t.Logf("%d calls ended after %v ms", n, msList(results))
				})
			})
		}
	}
	t.Logf("all cases in %v", time.Since(started).Round(time.Millisecond))
}

func msList(results []callResult) []float64 {
	out := make([]float64, len(results))
	for i, r := range results {
		out[i] = math.Round(r.MS)
	}
	return out
}

// checkStream checks, while the client still holds its stream, that the
// control plane's stream of nodeID has every type it asked for
// acknowledged and nothing NACKed, and that the control plane counts it
// as a client of kind (its /metrics label: grpc for another language's
// gRPC, grpc-go for gRPC-Go).
func checkStream(t testing.TB, cp *controlplane.Server, nodeID, kind string) {
	t.Helper()
	var last string
	meshtest.WaitUntil(t, 10*time.Second, "the client's xDS stream to acknowledge everything ("+nodeID+")", func() bool {
		var streams []controlplane.Client
		for _, c := range cp.Clients() {
			if c.NodeID == nodeID {
				streams = append(streams, c)
			}
		}
		if len(streams) == 0 {
			last = "no stream of the node"
			return false
		}
		var stale []string
		for _, c := range streams {
			for typ, ts := range c.Types {
				if ts.NackCount > 0 || ts.Status == controlplane.StatusNacked {
					t.Fatalf("stream %d (%s) NACKed %s %d times, version %s: %s", c.StreamID, c.UserAgent, typ, ts.NackCount, ts.Nacked, ts.NackDetail)
				}
				if ts.Status != controlplane.StatusSynced {
					stale = append(stale, fmt.Sprintf("%s %s", typ, ts.Status))
				}
			}
			if len(c.Types) < 4 {
				stale = append(stale, fmt.Sprintf("only %d types asked for", len(c.Types)))
			}
		}
		last = strings.Join(stale, ", ")
		return len(stale) == 0
	})
	if t.Failed() {
		t.Logf("last seen: %s", last)
	}
	if n := xdsClients(t, cp, kind); n < 1 {
		t.Errorf("the control plane counts %d xDS clients of kind %s, want the client's; user agent %q", n, kind, userAgent(cp, nodeID))
	}
}

func userAgent(cp *controlplane.Server, nodeID string) string {
	for _, c := range cp.Clients() {
		if c.NodeID == nodeID {
			return c.UserAgent
		}
	}
	return ""
}

// xdsClients reads the control plane's count of xDS streams of a kind
// from its /metrics.
func xdsClients(t testing.TB, cp *controlplane.Server, kind string) int {
	t.Helper()
	resp, err := http.Get("http://" + cp.AdminAddr() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	name := controlplane.MetricsPrefix + "xds_clients{"
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, name) && strings.Contains(l, `client="`+kind+`"`) {
			n, err := strconv.ParseFloat(l[strings.LastIndexByte(l, ' ')+1:], 64)
			if err != nil {
				t.Fatalf("/metrics: %q: %v", l, err)
			}
			return int(n)
		}
	}
	t.Fatalf("/metrics has no %s with client=%q", name, kind)
	return 0
}
