package mesh_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/telemetry"
)

// telemetryConfig routes calls with x-fault: abort on the route "faulty"
// (an abort with 503, every time), the rest on "main"; denies
// CollectHellos; and rate-limits SayHellos to a token an hour.
var telemetryConfig = map[string]string{
	"route.yaml": greeterRoute(`  - name: faulty
    match:
    - headers:
        x-fault:
          exact: abort
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 100
    route:
    - destination:
        host: greeter
  - name: main
    route:
    - destination:
        host: greeter
`),
	"deny.yaml": `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-collect
spec:
  selector:
    matchLabels:
      app: greeter
  action: DENY
  rules:
  - to:
    - operation:
        paths: [` + collectHellosPath + `]
`,
	"ratelimit.yaml": rateLimit("greeter", `  limit: {requestsPerUnit: 1, unit: hour, burst: 1}
  match:
  - path: {exact: `+sayHellosPath+`}
`),
}

// outcomeKind is one kind of call the metrics test makes.
type outcomeKind int

const (
	kindOK outcomeKind = iota
	kindAbort
	kindDenied
	kindLimited
)

// telemetryPath calls the greeter in one way of each kind, and says how
// it ended: "http <status>" or "grpc <code number>".
type telemetryPath struct {
	name  string
	proto string // request_protocol
	serve func(t *testing.T, m *mesh.Mesh)
	call  func(t *testing.T, m *mesh.Mesh) func(ctx context.Context, k outcomeKind) string
}

var telemetryPaths = []telemetryPath{
	{
		name: "HTTP", proto: "http",
		serve: func(t *testing.T, m *mesh.Mesh) { serveHTTPGreeter(t, m, "v1", nil) },
		call: func(t *testing.T, m *mesh.Mesh) func(context.Context, outcomeKind) string {
			c := httpClientFor(t, m)
			return func(ctx context.Context, k outcomeKind) string {
				path := map[outcomeKind]string{kindOK: sayHelloPath, kindAbort: sayHelloPath, kindDenied: collectHellosPath, kindLimited: sayHellosPath}[k]
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d%s", greeterPort, path), nil)
				if k == kindAbort {
					req.Header.Set("x-fault", "abort")
				}
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
		name: "gRPC", proto: "grpc",
		serve: func(t *testing.T, m *mesh.Mesh) { serveGreeter(t, m, "v1", &grpcGreeter{}) },
		call: func(t *testing.T, m *mesh.Mesh) func(context.Context, outcomeKind) string {
			c := dialGreeter(t, m)
			return func(ctx context.Context, k outcomeKind) string {
				var err error
				switch k {
				case kindOK:
					_, err = c.SayHello(ctx, &greeterpb.HelloRequest{Name: "x"})
				case kindAbort:
					_, err = c.SayHello(metadata.AppendToOutgoingContext(ctx, "x-fault", "abort"), &greeterpb.HelloRequest{Name: "x"})
				case kindDenied:
					var s greeterpb.Greeter_CollectHellosClient
					if s, err = c.CollectHellos(ctx); err == nil {
						_, err = s.CloseAndRecv()
					}
				case kindLimited:
					var s greeterpb.Greeter_SayHellosClient
					if s, err = c.SayHellos(ctx, &greeterpb.HelloRequest{Name: "x"}); err == nil {
						for err == nil {
							_, err = s.Recv()
						}
						if err == io.EOF {
							err = nil
						}
					}
				}
				return fmt.Sprintf("grpc %d", status.Code(err))
			}
		},
	},
}

// syncBuffer is an access log's sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) take() []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []map[string]any
	sc := bufio.NewScanner(&s.b)
	for sc.Scan() {
		var rec map[string]any
		if json.Unmarshal(sc.Bytes(), &rec) == nil {
			out = append(out, rec)
		}
	}
	s.b.Reset()
	return out
}

// After known calls (200s, aborts of a fault, RBAC denials, rate-limit
// refusals), the Prometheus text counts each of them, by route,
// response code and flags, from the client's side (reporter source) and
// the server's (reporter destination), under Istio's exact metric names;
// and the access log has one record per request on each side, each with
// its span's trace ID, the refused ones with their reason.
func TestTelemetryMetricsAndAccessLog(t *testing.T) {
	counts := map[outcomeKind]int{kindOK: 5, kindAbort: 3, kindDenied: 2, kindLimited: 4}
	for _, p := range telemetryPaths {
		t.Run(p.name, func(t *testing.T) {
			var logs syncBuffer
			tel, exp := tracedTelemetry(t, &logs)
			cp, _ := startControlPlane(t, telemetryConfig)
			p.serve(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, mesh.WithTelemetry(tel)))
			call := p.call(t, startMesh(t, cp.XDSAddr(), "client", map[string]string{"version": "v9"}, mesh.WithTelemetry(tel)))
			do := func(k outcomeKind) string {
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				defer cancel()
				return call(ctx, k)
			}
			// The config is in force when each kind ends its own way; the
			// rate limit's one token is spent on the way.
			ok := do(kindOK)
			meshtest.WaitUntil(t, 15*time.Second, "the greeter to answer", func() bool { ok = do(kindOK); return ok == "http 200" || ok == "grpc 0" })
			seen := map[outcomeKind]string{}
			meshtest.WaitUntil(t, 15*time.Second, "the fault, the denial and the rate limit", func() bool {
				for _, k := range []outcomeKind{kindAbort, kindDenied, kindLimited} {
					seen[k] = do(k)
				}
				return seen[kindAbort] != ok && seen[kindDenied] != ok && seen[kindLimited] != ok
			})
			seen[kindOK] = ok
			t.Logf("outcomes: %v", seen)

			before := scrape(t, tel)
			logs.take()
			exp.Reset()
			for _, k := range []outcomeKind{kindOK, kindAbort, kindDenied, kindLimited} {
				for range counts[k] {
					if got := do(k); got != seen[k] {
						t.Fatalf("kind %d: %q, want %q as before", k, got, seen[k])
					}
				}
			}
			after := scrape(t, tel)

			code := func(k outcomeKind) (responseCode, grpcStatus string) {
				proto, v, _ := strings.Cut(seen[k], " ")
				if proto == "grpc" {
					return "200", v
				}
				return v, ""
			}
			type row struct {
				reporter, route, flags string
				k                      outcomeKind
			}
			rows := []row{
				{"source", "main", "-", kindOK},
				{"source", "faulty", "FI", kindAbort},
				{"source", "main", "-", kindDenied},
				{"source", "main", "-", kindLimited},
				{"destination", "", "-", kindOK},
				{"destination", "", "-", kindDenied},
				{"destination", "", "RL", kindLimited},
			}
			for _, r := range rows {
				rc, gs := code(r.k)
				want := map[string]string{"reporter": r.reporter, "route": r.route, "response_flags": r.flags, "response_code": rc, "grpc_response_status": gs, "request_protocol": p.proto,
					"destination_service": "greeter.default.svc.cluster.local", "destination_service_name": "greeter", "source_workload": "client", "source_version": "v9"}
				if r.reporter == "destination" {
					want["source_principal"] = spiffeFor("client")
					want["destination_version"] = "v1"
					want["connection_security_policy"] = "mutual_tls"
				}
				if got := after.sum("istio_requests_total", want) - before.sum("istio_requests_total", want); got != float64(counts[r.k]) {
					t.Errorf("istio_requests_total%v: +%v, want +%d", want, got, counts[r.k])
				}
				if got := after.sum("istio_request_duration_milliseconds_count", want) - before.sum("istio_request_duration_milliseconds_count", want); got != float64(counts[r.k]) {
					t.Errorf("istio_request_duration_milliseconds_count%v: +%v, want +%d", want, got, counts[r.k])
				}
			}
			// The server never saw the aborted calls.
			total := counts[kindOK] + counts[kindDenied] + counts[kindLimited]
			if got := after.sum("istio_requests_total", map[string]string{"reporter": "destination"}) - before.sum("istio_requests_total", map[string]string{"reporter": "destination"}); got != float64(total) {
				t.Errorf("the server reported +%v requests, want +%d", got, total)
			}
			for _, name := range []string{"istio_request_bytes_count", "istio_response_bytes_count"} {
				if got := after.sum(name, map[string]string{"reporter": "source"}) - before.sum(name, map[string]string{"reporter": "source"}); got != float64(total+counts[kindAbort]) {
					t.Errorf("%s (source): +%v, want +%d", name, got, total+counts[kindAbort])
				}
			}
			if got := after.sum("meshlet_rate_limited_total", nil) - before.sum("meshlet_rate_limited_total", nil); got != float64(counts[kindLimited]) {
				t.Errorf("meshlet_rate_limited_total: +%v, want +%d", got, counts[kindLimited])
			}
			if got := after.sum("meshlet_faults_injected_total", map[string]string{"kind": "abort"}) - before.sum("meshlet_faults_injected_total", map[string]string{"kind": "abort"}); got != float64(counts[kindAbort]) {
				t.Errorf("meshlet_faults_injected_total{kind=abort}: +%v, want +%d", got, counts[kindAbort])
			}

			// Access log: one record a request on each side that saw it.
			spans := map[string]bool{}
			for _, s := range exp.GetSpans() {
				spans[s.SpanContext.TraceID().String()+"/"+s.SpanContext.SpanID().String()] = true
			}
			recs := logs.take()
			if want := 2*total + counts[kindAbort]; len(recs) != want {
				t.Fatalf("%d access-log records, want %d", len(recs), want)
			}
			refused := 0
			for _, rec := range recs {
				id := fmt.Sprint(rec["trace_id"], "/", rec["span_id"])
				if !spans[id] {
					t.Errorf("access-log record %v: trace/span %s is no exported span's", rec, id)
				}
				if rec["direction"] == "inbound" && rec["reason"] != nil {
					refused++
					reason := fmt.Sprint(rec["reason"])
					if !strings.Contains(reason, "deny-collect") && !strings.Contains(reason, "rate limit") {
						t.Errorf("refused request logged with reason %q, want the deny policy or the rate limit named", reason)
					}
				}
			}
			if refused != counts[kindDenied]+counts[kindLimited] {
				t.Errorf("%d inbound records with a reason, want %d (denied and rate limited)", refused, counts[kindDenied]+counts[kindLimited])
			}
		})
	}
}

// promText is a Prometheus text exposition.
type promText []string

func scrape(t *testing.T, tel *telemetry.Telemetry) promText {
	t.Helper()
	w := httptest.NewRecorder()
	tel.MetricsHandler().ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if w.Code != http.StatusOK {
		t.Fatalf("metrics: %d %s", w.Code, w.Body)
	}
	return strings.Split(w.Body.String(), "\n")
}

// sum adds the values of the series of metric name whose labels include
// want.
func (p promText) sum(name string, want map[string]string) float64 {
	var total float64
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
				break
			}
		}
		if match {
			var v float64
			fmt.Sscan(rest[end+2:], &v)
			total += v
		}
	}
	return total
}

// parseLabels reads k="v",k2="v2" (values without escapes).
func parseLabels(s string) map[string]string {
	out := map[string]string{}
	for s != "" {
		k, rest, ok := strings.Cut(s, `="`)
		if !ok {
			break
		}
		v, rest, _ := strings.Cut(rest, `"`)
		out[k] = v
		s = strings.TrimPrefix(rest, ",")
	}
	return out
}
