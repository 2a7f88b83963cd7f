package mesh_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/telemetry"
)

// tracedTelemetry is telemetry that samples every trace into an
// in-memory exporter, synchronously, and writes its access log to log.
func tracedTelemetry(t *testing.T, log io.Writer) (*telemetry.Telemetry, *tracetest.InMemoryExporter) {
	t.Helper()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	t.Cleanup(func() { tp.Shutdown(context.Background()) })
	opts := []telemetry.Option{telemetry.WithTracerProvider(tp)}
	if log != nil {
		opts = append(opts, telemetry.WithAccessLog(slog.New(slog.NewJSONHandler(log, nil))))
	}
	tel, err := telemetry.New(t.Context(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(context.Background()) })
	return tel, exp
}

// middle is a gRPC greeter that answers with what the HTTP service back
// answers it, called over the mesh under the RPC's context.
type middle struct {
	greeterpb.UnimplementedGreeterServer
	back *http.Client
}

func (m *middle) SayHello(ctx context.Context, _ *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://back:8080/leaf", nil)
	if err != nil {
		return nil, err
	}
	resp, err := m.back.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return &greeterpb.HelloReply{Message: string(b)}, nil
}

// startChain starts the services front (HTTP, port 8000), middle (gRPC,
// 9090) and back (HTTP, 8080), each calling the next over the mesh under
// its request's context, and a client; opts gives each service's mesh
// option (the client's is opts("client")). onBack, if not nil, sees each
// request back serves. It returns a GET of http://front:8000/start from
// the client: the body, or the error.
func startChain(t *testing.T, cp *controlplane.Server, opts func(service string) mesh.Option, onBack func(*http.Request)) func() string {
	t.Helper()
	backMesh := startMesh(t, cp.XDSAddr(), "back", map[string]string{"version": "v3"}, opts("back"))
	backSrv, err := backMesh.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if onBack != nil {
			onBack(r)
		}
		io.WriteString(w, "leaf")
	}), mesh.WithServicePort(8080))
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, backSrv, listen(t, "127.0.0.1:0"))

	middleMesh := startMesh(t, cp.XDSAddr(), "middle", map[string]string{"version": "v2"}, opts("middle"))
	midSrv, err := middleMesh.NewGRPCServer(mesh.WithServicePort(9090))
	if err != nil {
		t.Fatal(err)
	}
	greeterpb.RegisterGreeterServer(midSrv, &middle{back: httpClientFor(t, middleMesh)})
	serveUntilCleanup(t, midSrv, listen(t, "127.0.0.1:0"))

	frontMesh := startMesh(t, cp.XDSAddr(), "front", map[string]string{"version": "v1"}, opts("front"))
	toMiddle := dial(t, frontMesh, "middle:9090")
	frontSrv, err := frontMesh.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reply, err := toMiddle.SayHello(r.Context(), &greeterpb.HelloRequest{Name: "x"})
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		io.WriteString(w, reply.GetMessage())
	}), mesh.WithServicePort(8000))
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, frontSrv, listen(t, "127.0.0.1:0"))
	waitRegistered(t, cp, 3)

	client := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil, opts("client")))
	return func() string {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://front:8000/start", nil)
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
}

// One request from a client through front (HTTP) to middle (gRPC) to
// back (HTTP), each a mesh service calling the next over the mesh, is
// one trace of six spans: each hop a client span and the server span
// under it, each client span under the server span of the service that
// sent it, with the mesh's attributes.
func TestTelemetryTraceAcrossServices(t *testing.T) {
	cp, _ := startControlPlane(t, nil)
	tel, exp := tracedTelemetry(t, nil)
	withTel := mesh.WithTelemetry(tel)
	get := startChain(t, cp, func(string) mesh.Option { return withTel }, nil)
	meshtest.WaitUntil(t, 15*time.Second, "the chain to answer", func() bool { return get() == "leaf" })
	exp.Reset()
	if got := get(); got != "leaf" {
		t.Fatalf("chain answered %q", got)
	}
	// The client's span ends when its body is read: all six are in.
	spans := exp.GetSpans()
	if len(spans) != 6 {
		t.Fatalf("%d spans, want 6: %v", len(spans), spanNames(spans))
	}
	traceID := spans[0].SpanContext.TraceID()
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, s := range spans {
		if s.SpanContext.TraceID() != traceID {
			t.Errorf("span %q is in trace %s, want %s (one trace)", s.Name, s.SpanContext.TraceID(), traceID)
		}
		byID[s.SpanContext.SpanID()] = s
	}
	// The chain, root first: kind, name, the attributes to check.
	want := []struct {
		kind  trace.SpanKind
		name  string
		attrs map[string]string
	}{
		{trace.SpanKindClient, "GET /start", map[string]string{"meshlet.source.service": "client", "meshlet.destination.service": "front.default.svc.cluster.local", "meshlet.cluster": "outbound|8000||front.default.svc.cluster.local"}},
		{trace.SpanKindServer, "GET /start", map[string]string{"meshlet.source.service": "client", "meshlet.destination.version": "v1", "http.response.status_code": "200"}},
		{trace.SpanKindClient, "meshlet.example.greeter.v1.Greeter/SayHello", map[string]string{"meshlet.source.service": "front", "meshlet.source.version": "v1", "meshlet.destination.service": "middle.default.svc.cluster.local", "rpc.grpc.status_code": "0"}},
		{trace.SpanKindServer, "meshlet.example.greeter.v1.Greeter/SayHello", map[string]string{"meshlet.source.service": "front", "meshlet.source.version": "v1", "meshlet.destination.version": "v2"}},
		{trace.SpanKindClient, "GET /leaf", map[string]string{"meshlet.source.service": "middle", "meshlet.destination.service": "back.default.svc.cluster.local", "meshlet.response_flags": "-"}},
		{trace.SpanKindServer, "GET /leaf", map[string]string{"meshlet.source.service": "middle", "meshlet.source.version": "v2", "meshlet.destination.version": "v3"}},
	}
	var parent trace.SpanID
	for i, w := range want {
		var got *tracetest.SpanStub
		for _, s := range spans {
			if s.Parent.SpanID() == parent && s.SpanKind == w.kind && s.Name == w.name {
				got = &s
				break
			}
		}
		if got == nil {
			t.Fatalf("hop %d: no %v span %q under span %s; spans: %v", i, w.kind, w.name, parent, spanNames(spans))
		}
		if i == 0 && got.Parent.IsValid() {
			t.Errorf("the client's span has a parent %s, want a root", got.Parent.SpanID())
		}
		attrs := map[string]string{}
		for _, kv := range got.Attributes {
			attrs[string(kv.Key)] = kv.Value.String()
		}
		for k, v := range w.attrs {
			if attrs[k] != v {
				t.Errorf("span %d %q: %s = %q, want %q", i, w.name, k, attrs[k], v)
			}
		}
		if w.kind == trace.SpanKindClient && attrs["meshlet.endpoint"] == "" {
			t.Errorf("client span %q has no meshlet.endpoint", w.name)
		}
		if w.kind == trace.SpanKindClient && len(got.Events) != 1 {
			t.Errorf("client span %q has %d attempt events, want 1", w.name, len(got.Events))
		}
		parent = got.SpanContext.SpanID()
	}
}

func spanNames(spans tracetest.SpanStubs) []string {
	var out []string
	for _, s := range spans {
		out = append(out, fmt.Sprintf("%v %q parent=%s id=%s", s.SpanKind, s.Name, s.Parent.SpanID(), s.SpanContext.SpanID()))
	}
	return out
}
