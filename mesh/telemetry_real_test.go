package mesh_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/telemetry"
)

// envTelemetry is a service's telemetry as a user turns it on: from the
// OTEL_* environment, named after the service. Shutdown flushes its
// spans.
func envTelemetry(t *testing.T, service string) *telemetry.Telemetry {
	t.Helper()
	tel, err := telemetry.New(t.Context(), telemetry.WithServiceName(service))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	return tel
}

// One request through client → front (HTTP) → middle (gRPC) → back
// (HTTP), each service with its own telemetry exporting over OTLP (gRPC,
// then HTTP) as the standard environment variables say, is one trace in
// a real Jaeger, found through its query API, with each service's spans
// under the caller's and the mesh's attributes on them.
func TestTelemetryJaeger(t *testing.T) {
	j := meshtest.StartJaeger(t)
	for _, proto := range []struct {
		name string
		env  map[string]string
	}{
		{"otlp-grpc", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://" + j.OTLPGRPCAddr()}},
		{"otlp-http", map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": j.OTLPHTTPURL()}},
	} {
		t.Run(proto.name, func(t *testing.T) {
			t.Setenv("OTEL_TRACES_EXPORTER", "otlp")
			t.Setenv("OTEL_TRACES_SAMPLER", "parentbased_always_on")
			t.Setenv("OTEL_METRICS_EXPORTER", "none")
			for k, v := range proto.env {
				t.Setenv(k, v)
			}
			traceToJaeger(t, j)
		})
	}
}

// traceToJaeger sends one request through the chain, each service with
// telemetry from the environment, and checks its trace in j.
func traceToJaeger(t *testing.T, j *meshtest.Jaeger) {
	cp, _ := startControlPlane(t, nil)
	tels := map[string]*telemetry.Telemetry{}
	for _, s := range []string{"client", "front", "middle", "back"} {
		tels[s] = envTelemetry(t, s)
	}

	traces := make(chan trace.TraceID, 16)
	get := startChain(t, cp, func(s string) mesh.Option { return mesh.WithTelemetry(tels[s]) }, func(r *http.Request) {
		select {
		case traces <- trace.SpanContextFromContext(r.Context()).TraceID():
		default:
		}
	})
	meshtest.WaitUntil(t, 15*time.Second, "the chain to answer", func() bool { return get() == "leaf" })
	for len(traces) > 0 {
		<-traces
	}
	if got := get(); got != "leaf" {
		t.Fatalf("chain answered %q", got)
	}
	var id trace.TraceID
	select {
	case id = <-traces:
	default:
		t.Fatal("back saw no request")
	}
	if !id.IsValid() {
		t.Fatal("back's handler ran outside a trace")
	}
	// Flush every service's batched spans to Jaeger.
	for _, tel := range tels {
		if err := tel.Shutdown(t.Context()); err != nil {
			t.Fatal(err)
		}
	}

	spans := j.WaitTrace(t, id.String(), 6)
	if len(spans) != 6 {
		t.Fatalf("Jaeger has %d spans of trace %s, want 6:\n%v", len(spans), id, spans)
	}
	byID := map[string]meshtest.Span{}
	children := map[string][]meshtest.Span{}
	var roots []meshtest.Span
	for _, s := range spans {
		byID[s.SpanID] = s
	}
	for _, s := range spans {
		if _, ok := byID[s.ParentSpanID]; ok {
			children[s.ParentSpanID] = append(children[s.ParentSpanID], s)
		} else {
			roots = append(roots, s)
		}
	}
	if len(roots) != 1 {
		t.Fatalf("%d spans without a parent in the trace, want 1: %v", len(roots), roots)
	}
	// The chain from the root: each span's one child, its service, kind
	// and the attributes to check.
	want := []struct {
		service, kind string
		attrs         map[string]string
	}{
		{"client", "client", map[string]string{"meshlet.destination.service": "front.default.svc.cluster.local", "meshlet.cluster": "outbound|8000||front.default.svc.cluster.local"}},
		{"front", "server", map[string]string{"meshlet.source.service": "client", "meshlet.destination.version": "v1"}},
		{"front", "client", map[string]string{"meshlet.destination.service": "middle.default.svc.cluster.local", "rpc.method": "SayHello"}},
		{"middle", "server", map[string]string{"meshlet.source.service": "front", "meshlet.destination.version": "v2", "rpc.grpc.status_code": "0"}},
		{"middle", "client", map[string]string{"meshlet.destination.service": "back.default.svc.cluster.local", "http.request.method": "GET"}},
		{"back", "server", map[string]string{"meshlet.source.service": "middle", "meshlet.destination.version": "v3", "http.response.status_code": "200"}},
	}
	s := roots[0]
	for i, w := range want {
		if s.Service != w.service || s.Attributes["span.kind"] != w.kind {
			t.Errorf("span %d of the chain: %s (%s), want a %s span of %s", i, s.Service, s.Attributes["span.kind"], w.kind, w.service)
		}
		for k, v := range w.attrs {
			if s.Attributes[k] != v {
				t.Errorf("span %d (%s %q): %s = %q, want %q", i, s.Service, s.Operation, k, s.Attributes[k], v)
			}
		}
		if i == len(want)-1 {
			break
		}
		next := children[s.SpanID]
		if len(next) != 1 {
			t.Fatalf("span %d (%s %q) has %d children, want 1: %v", i, s.Service, s.Operation, len(next), next)
		}
		s = next[0]
	}
	t.Logf("trace %s in Jaeger: %v", id, spans)
}

// A real Prometheus scrapes a client's and a server's /metrics over
// loopback, and PromQL gives the request counts the client made, by
// reporter, route and response code.
func TestTelemetryPrometheus(t *testing.T) {
	t.Setenv("OTEL_TRACES_EXPORTER", "none")
	t.Setenv("OTEL_METRICS_EXPORTER", "prometheus")
	cp, _ := startControlPlane(t, telemetryConfig)
	serverTel, clientTel := envTelemetry(t, "greeter"), envTelemetry(t, "client")
	serveHTTPGreeter(t, startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, mesh.WithTelemetry(serverTel)), "v1", nil)

	// A probe without telemetry waits for the config (the route, its
	// fault), so that the measured client's every call is one counted.
	get := func(c *http.Client, fault bool) string {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d%s", greeterPort, sayHelloPath), nil)
		if fault {
			req.Header.Set("x-fault", "abort")
		}
		resp, err := c.Do(req)
		if err != nil {
			return err.Error()
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return fmt.Sprint(resp.StatusCode)
	}
	probe := httpClientFor(t, startMesh(t, cp.XDSAddr(), "probe", nil))
	meshtest.WaitUntil(t, 15*time.Second, "the greeter and the fault", func() bool { return get(probe, false) == "200" && get(probe, true) == "503" })

	client := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", map[string]string{"version": "v9"}, mesh.WithTelemetry(clientTel)))
	const ok, aborted = 7, 3
	for range ok {
		if got := get(client, false); got != "200" {
			t.Fatalf("call: %s, want 200", got)
		}
	}
	for range aborted {
		if got := get(client, true); got != "503" {
			t.Fatalf("call with x-fault: %s, want 503", got)
		}
	}

	clientMetrics := httptest.NewServer(clientTel.MetricsHandler())
	defer clientMetrics.Close()
	serverMetrics := httptest.NewServer(serverTel.MetricsHandler())
	defer serverMetrics.Close()
	prom := meshtest.StartPrometheus(t, strings.TrimPrefix(clientMetrics.URL, "http://"), strings.TrimPrefix(serverMetrics.URL, "http://"))

	for _, q := range []struct {
		promql string
		want   float64
	}{
		{`sum(istio_requests_total{reporter="source",source_workload="client",source_version="v9",destination_service_name="greeter",route="main",response_code="200",response_flags="-"})`, ok},
		{`sum(istio_requests_total{reporter="source",source_workload="client",route="faulty",response_code="503",response_flags="FI"})`, aborted},
		{`sum(istio_requests_total{reporter="destination",source_workload="client",destination_version="v1",response_code="200",connection_security_policy="mutual_tls"})`, ok},
		{`sum(istio_request_duration_milliseconds_count{reporter="source",source_workload="client"})`, ok + aborted},
	} {
		prom.WaitQuery(t, 30*time.Second, q.promql, func(s []meshtest.Sample) bool { return len(s) == 1 && s[0].Value == q.want })
	}
}
