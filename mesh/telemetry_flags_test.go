package mesh_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// flagsConfig routes by the x-case header: "retry" to v1 with two
// retries, "timeout" to v1 within 100ms, "nohost" to v9 (no instance
// has it), the rest to the whole service; a call at a time per cluster.
var flagsConfig = map[string]string{
	"rule.yaml": greeterRule(subsets("v1", "v9") + trafficPolicy("    connectionPool:\n      http:\n        http2MaxRequests: 1\n")),
	"route.yaml": greeterRoute(`  - name: retry
    match:
    - headers:
        x-case:
          exact: retry
    retries:
      attempts: 2
      retryOn: 5xx,unavailable
    route:
    - destination:
        host: greeter
        subset: v1
  - name: timeout
    match:
    - headers:
        x-case:
          exact: timeout
    timeout: 100ms
    retries:
      attempts: 0
    route:
    - destination:
        host: greeter
        subset: v1
  - name: nohost
    match:
    - headers:
        x-case:
          exact: nohost
    retries:
      attempts: 0
    route:
    - destination:
        host: greeter
        subset: v9
  - name: main
    retries:
      attempts: 0
    route:
    - destination:
        host: greeter
`),
}

// flagsCaller calls the greeter with the x-case header, sleeping at the
// server for sleep, failing there when key is "fail"; it returns how the
// call ended: "http <status>" or "grpc <code number>".
type flagsCaller func(ctx context.Context, xcase string, sleep time.Duration, key string) string

var flagsPaths = []struct {
	name  string
	serve func(t *testing.T, m *mesh.Mesh)
	call  func(t *testing.T, m *mesh.Mesh) flagsCaller
}{
	{
		name:  "HTTP",
		serve: func(t *testing.T, m *mesh.Mesh) { serveHTTPGreeter(t, m, "v1", &httpGreeter{failures: 1 << 20}) },
		call: func(t *testing.T, m *mesh.Mesh) flagsCaller {
			c := httpClientFor(t, m)
			return func(ctx context.Context, xcase string, sleep time.Duration, key string) string {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d/?sleep=%s&key=%s", greeterPort, sleep, key), nil)
				req.Header.Set("x-case", xcase)
				resp, err := c.Do(req)
				if err != nil {
					return err.Error()
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return fmt.Sprintf("http %d", resp.StatusCode)
			}
		},
	},
	{
		name:  "gRPC",
		serve: func(t *testing.T, m *mesh.Mesh) { serveGreeter(t, m, "v1", &grpcGreeter{failures: 1 << 20}) },
		call: func(t *testing.T, m *mesh.Mesh) flagsCaller {
			c := dialGreeter(t, m)
			return func(ctx context.Context, xcase string, sleep time.Duration, key string) string {
				_, err := c.SayHello(metadata.AppendToOutgoingContext(ctx, "x-case", xcase), steer(sleep, key))
				return fmt.Sprintf("grpc %d", status.Code(err))
			}
		},
	},
}

// Each way the mesh, rather than the server, ends a call carries Envoy's
// response flag in istio_requests_total: retries used up (URX), the
// route's timeout (UT), no endpoint (UH), circuit breaking (UO), with
// the status the caller saw.
func TestTelemetryResponseFlags(t *testing.T) {
	for _, p := range flagsPaths {
		t.Run(p.name, func(t *testing.T) {
			tel, _ := tracedTelemetry(t, nil)
			cp, _ := startControlPlane(t, flagsConfig)
			p.serve(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}))
			// No grace for a cluster without endpoints: v9 has none.
			call := p.call(t, startMesh(t, cp.XDSAddr(), "client", nil, mesh.WithTelemetry(tel), mesh.WithConfigWait(mesh.ConfigWait{RegistrationGrace: -1})))
			do := func(xcase string, sleep time.Duration, key string) string {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				return call(ctx, xcase, sleep, key)
			}
			ok := map[string]string{"HTTP": "http 200", "gRPC": "grpc 0"}[p.name]
			meshtest.WaitUntil(t, 15*time.Second, "the greeter and the routes", func() bool {
				return do("", 0, "") == ok && do("timeout", 300*time.Millisecond, "") != ok
			})

			before := scrape(t, tel)
			want := map[string]string{ // flags: how the call ended
				"URX": map[string]string{"HTTP": "http 503", "gRPC": "grpc 14"}[p.name],
				"UT":  map[string]string{"HTTP": "http 504", "gRPC": "grpc 4"}[p.name],
				"UH":  map[string]string{"HTTP": "http 503", "gRPC": "grpc 14"}[p.name],
			}
			const n = 3
			for range n {
				for flags, xcase := range map[string]string{"URX": "retry", "UT": "timeout", "UH": "nohost"} {
					key, sleep := "", time.Duration(0)
					switch xcase {
					case "retry":
						key = "fail"
					case "timeout":
						sleep = 300 * time.Millisecond
					}
					if got := do(xcase, sleep, key); got != want[flags] {
						t.Fatalf("%s call: %s, want %s", xcase, got, want[flags])
					}
				}
			}
			// While a slow call holds the cluster's only request slot,
			// calls are refused, UO. Whichever call gets the slot first
			// holds it: the slow one is made again until it had it.
			var refused atomic.Int64
			refusal := func(got string) {
				refused.Add(1)
				if got != want["UH"] {
					t.Errorf("a call over the limit: %s, want %s", got, want["UH"])
				}
			}
			slowDone := make(chan struct{})
			deadline := time.Now().Add(10 * time.Second)
			go func() {
				defer close(slowDone)
				for time.Now().Before(deadline) {
					got := do("", 500*time.Millisecond, "")
					if got == ok {
						return
					}
					refusal(got)
				}
			}()
			// At most 100 refusals, a millisecond apart: then the slow
			// call is left to end.
			for running := true; running; {
				select {
				case <-slowDone:
					running = false
				case <-time.After(time.Millisecond):
					if refused.Load() >= 100 {
						<-slowDone
						running = false
					} else if got := do("", 0, ""); got != ok {
						refusal(got)
					}
				}
			}
			overflow := int(refused.Load())
			if overflow == 0 {
				t.Fatal("no call was refused while the slow one held the slot")
			}
			t.Logf("%d calls refused while the slow one held the slot", overflow)
			after := scrape(t, tel)

			for flags, count := range map[string]int{"URX": n, "UT": n, "UH": n, "UO": overflow} {
				labels := map[string]string{"reporter": "source", "response_flags": flags}
				if got := after.sum("istio_requests_total", labels) - before.sum("istio_requests_total", labels); got != float64(count) {
					t.Errorf("istio_requests_total{response_flags=%q}: +%v, want +%d (source reporter's flags: %v)", flags, got, count, after.values("istio_requests_total", "response_flags", map[string]string{"reporter": "source"}))
				}
			}
			// Each URX call was tried three times: two retries.
			retries := map[string]string{"reporter": "source"}
			if got := after.sum("meshlet_retries_total", retries) - before.sum("meshlet_retries_total", retries); got != 2*n {
				t.Errorf("meshlet_retries_total: +%v, want +%d", got, 2*n)
			}
		})
	}
}

// values sums name's series by the value of label, among those with the
// labels of want: for failure messages.
func (p promText) values(name, label string, want map[string]string) map[string]float64 {
	out := map[string]float64{}
	for _, line := range p {
		rest, ok := strings.CutPrefix(line, name+"{")
		if !ok {
			continue
		}
		end := strings.LastIndex(rest, "} ")
		if end < 0 {
			continue
		}
		labels := parseLabels(rest[:end])
		match := true
		for k, v := range want {
			if labels[k] != v {
				match = false
			}
		}
		if match {
			var v float64
			fmt.Sscan(rest[end+2:], &v)
			out[labels[label]] += v
		}
	}
	return out
}
