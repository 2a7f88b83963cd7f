package mesh_test

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// A call over gRPC-Go's xDS path (a WithGRPCGoXDS client to a
// WithXDSServer server) with WithTelemetry gets gRPC-Go's own
// OpenTelemetry plugin: a client span and the server span under it in
// the telemetry's tracer, one trace; and gRPC's standard metrics, its
// xDS client's among them, in the telemetry's /metrics under gRPC's
// names.
func TestTelemetryGRPCGoXDSPath(t *testing.T) {
	cp, _ := startControlPlane(t, nil)
	tel, exp := tracedTelemetry(t, nil)
	gm := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, mesh.WithTelemetry(tel))
	serveGreeter(t, gm, "v1", nil, mesh.WithXDSServer())
	waitRegistered(t, cp, 1)
	cm := startMesh(t, cp.XDSAddr(), "client", nil, mesh.WithGRPCGoXDS(), mesh.WithTelemetry(tel))
	c := dialGreeter(t, cm)
	call := func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		_, err := c.SayHello(ctx, &greeterpb.HelloRequest{Name: "x"})
		return err
	}
	meshtest.WaitUntil(t, 20*time.Second, "a call over gRPC-Go's xDS path", func() bool { return call() == nil })
	// A server records a call just after its client has the reply: read
	// the metrics once every call the server started has ended.
	grpcMethod := map[string]string{"grpc_method": "meshlet.example.greeter.v1.Greeter/SayHello"}
	settled := func() promText {
		var p promText
		meshtest.WaitUntil(t, 5*time.Second, "the server's calls to end", func() bool {
			p = scrape(t, tel)
			return p.sum("grpc_server_call_started", grpcMethod) == p.sum("grpc_server_call_duration_count", grpcMethod)
		})
		return p
	}
	before := settled()
	exp.Reset()
	const n = 3
	for i := range n {
		if err := call(); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
	}
	after := settled()

	// The server span may end just after the client has its reply.
	const method = "meshlet.example.greeter.v1.Greeter.SayHello"
	var client, server []tracetest.SpanStub
	// Each measured call's server span is in its client span's trace.
	var stray []tracetest.SpanStub
	meshtest.WaitUntil(t, 5*time.Second, "the server spans", func() bool {
		client, server, stray = nil, nil, nil
		spans := exp.GetSpans()
		traces := map[trace.TraceID]bool{}
		for _, s := range spans {
			if s.SpanKind == trace.SpanKindClient && s.Name == "Sent."+method {
				client = append(client, s)
				traces[s.SpanContext.TraceID()] = true
			}
		}
		for _, s := range spans {
			if s.SpanKind == trace.SpanKindServer && s.Name == "Recv."+method {
				if traces[s.SpanContext.TraceID()] {
					server = append(server, s)
				} else {
					stray = append(stray, s)
				}
			}
		}
		return len(server) >= n
	})
	if len(client) != n || len(server) != n {
		t.Fatalf("%d client spans Sent.%s and %d server spans Recv.%s in their traces, want %d each: %v", len(client), method, len(server), method, n, spanNames(exp.GetSpans()))
	}
	// The only server span outside them is the warm-up call's, ended
	// after the exporter was reset.
	if len(stray) > 1 {
		t.Errorf("%d server spans in no measured call's trace, want at most the warm-up's: %v", len(stray), spanNames(exp.GetSpans()))
	}

	for _, name := range []string{"grpc_client_attempt_started", "grpc_client_attempt_duration_count", "grpc_server_call_started", "grpc_server_call_duration_count"} {
		if got := after.sum(name, grpcMethod) - before.sum(name, grpcMethod); got != n {
			t.Errorf("%s%v: +%v, want +%d", name, grpcMethod, got, n)
		}
	}
	if got := after.sum("grpc_xds_client_resource_updates_valid", nil); got < 4 {
		t.Errorf("grpc_xds_client_resource_updates_valid: %v, want at least one per type (4)", got)
	}
	// Both xDS clients, the server's and the ClientConn's, are connected.
	for _, target := range []string{"#server", "xds:///greeter.default.svc.cluster.local:50051"} {
		labels := map[string]string{"grpc_target": target, "grpc_xds_server": cp.XDSAddr()}
		if got := after.value(t, "grpc_xds_client_connected", labels); got != 1 {
			t.Errorf("grpc_xds_client_connected%v = %v, want 1", labels, got)
		}
	}
	// meshlet's Istio metrics are its own path's: this path has none.
	if got := after.sum("istio_requests_total", map[string]string{"reporter": "source"}); got != 0 {
		t.Errorf("istio_requests_total{reporter=source} = %v on gRPC-Go's path, want none", got)
	}
}
