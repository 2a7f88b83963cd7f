package mesh_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
	"github.com/meshlet/meshlet/telemetry"
)

// BenchmarkUnary compares one unary RPC through meshlet (an xDS-routed
// client, weighted route, EDS endpoints, mTLS with SPIFFE SVIDs, to a mesh
// server) with the same RPC between a plain grpc-go client and server,
// plaintext and with the same mTLS, in the same process and run, so that
// the ratios are what to read on a noisy machine.
func BenchmarkUnary(b *testing.B) {
	req := &greeterpb.HelloRequest{Name: "bench"}
	b.Run("plain-grpc", func(b *testing.B) {
		addr := startPlainGreeter(b, "plain")
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runUnary(b, greeterpb.NewGreeterClient(cc), req)
	})
	b.Run("plain-grpc-mtls", func(b *testing.B) {
		runUnary(b, plainMTLSGreeterClient(b), req)
	})
	b.Run("meshlet", func(b *testing.B) {
		runUnary(b, meshletGreeterClient(b), req)
	})
	// Like for like with plain-grpc-mtls: one server, no route of its own.
	b.Run("meshlet-one-server", func(b *testing.B) {
		cp, _ := startControlPlane(b, nil)
		startGreeter(b, cp.XDSAddr(), "v1")
		client := dialGreeter(b, startMesh(b, cp.XDSAddr(), "client", nil))
		waitServing(b, client, "v1")
		runUnary(b, client, req)
	})
	// meshlet-one-server with every resilience policy configured, none
	// refusing a call.
	b.Run("meshlet-all-policies", func(b *testing.B) {
		cp, _ := startControlPlane(b, allPolicies)
		startGreeter(b, cp.XDSAddr(), "v1")
		client := dialGreeter(b, startMesh(b, cp.XDSAddr(), "client", nil))
		waitServing(b, client, "v1")
		runUnary(b, client, req)
	})
	// meshlet-one-server with telemetry on both sides: Istio's metrics
	// (tracing off), then every request traced too.
	for _, v := range telemetryVariants {
		b.Run("meshlet-one-server-"+v.name, func(b *testing.B) {
			tel := benchTelemetry(b, v.traced)
			cp, _ := startControlPlane(b, nil)
			serveGreeter(b, startMesh(b, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, tel), "v1", nil)
			client := dialGreeter(b, startMesh(b, cp.XDSAddr(), "client", nil, tel))
			waitServing(b, client, "v1")
			runUnary(b, client, req)
		})
	}
	b.Run("grpc-go-xds", func(b *testing.B) {
		runUnary(b, grpcGoXDSGreeterClient(b), req)
	})
}

// telemetryVariants are the benchmarks' telemetry cases: metrics with
// tracing off, and metrics with every request traced.
var telemetryVariants = []struct {
	name   string
	traced bool
}{{"metrics", false}, {"traced", true}}

// benchTelemetry is a mesh option with telemetry for a benchmark: Istio's
// metrics (a Prometheus registry nobody scrapes) and, if traced, every
// request sampled and batched to an exporter that drops the spans.
func benchTelemetry(b *testing.B, traced bool) mesh.Option {
	b.Setenv("OTEL_TRACES_EXPORTER", "none")
	b.Setenv("OTEL_METRICS_EXPORTER", "prometheus")
	var opts []telemetry.Option
	if traced {
		opts = append(opts, telemetry.WithSpanExporter(dropSpans{}), telemetry.WithSampleRatio(1))
	}
	tel, err := telemetry.New(b.Context(), opts...)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { tel.Shutdown(context.Background()) })
	return mesh.WithTelemetry(tel)
}

// dropSpans is a span exporter that drops what it is given.
type dropSpans struct{}

func (dropSpans) ExportSpans(context.Context, []sdktrace.ReadOnlySpan) error { return nil }
func (dropSpans) Shutdown(context.Context) error                             { return nil }

// grpcGoXDSGreeterClient is meshletGreeterClient on gRPC-Go's own xDS
// path: a client made WithGRPCGoXDS, and gRPC-Go's xDS servers.
func grpcGoXDSGreeterClient(b *testing.B) greeterpb.GreeterClient {
	cp, _ := startControlPlane(b, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(80, 20),
	})
	startGreeterWith(b, cp.XDSAddr(), "v1", nil, mesh.WithXDSServer())
	startGreeterWith(b, cp.XDSAddr(), "v2", nil, mesh.WithXDSServer())
	client := dialGreeter(b, startMesh(b, cp.XDSAddr(), "client", nil, mesh.WithGRPCGoXDS()))
	waitServing(b, client, "v1", "v2")
	return client
}

// plainMTLSGreeterClient returns a plain grpc-go client of a plain grpc-go
// greeter, over mTLS with the SVIDs meshlet uses, from a control plane's
// CA.
func plainMTLSGreeterClient(b *testing.B) greeterpb.GreeterClient {
	cp, _ := startControlPlane(b, nil)
	serverID := startMesh(b, cp.XDSAddr(), "greeter", nil).Identity()
	clientID := startMesh(b, cp.XDSAddr(), "client", nil).Identity()
	addr := startPlainGreeter(b, "plain", grpc.Creds(credentials.NewTLS(security.ServerTLSConfig(serverID, tlsconfig.AuthorizeAny()))))
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(security.ClientTLSConfig(clientID, tlsconfig.AuthorizeAny()))))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cc.Close() })
	return greeterpb.NewGreeterClient(cc)
}

// meshletGreeterClient returns a mesh.Dial client of the greeter, routed
// 80/20 between two mesh servers, v1 and v2, once both answer.
func meshletGreeterClient(b *testing.B) greeterpb.GreeterClient {
	cp, _ := startControlPlane(b, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(80, 20),
	})
	startGreeter(b, cp.XDSAddr(), "v1")
	startGreeter(b, cp.XDSAddr(), "v2")
	client := dialGreeter(b, startMesh(b, cp.XDSAddr(), "client", nil))
	waitServing(b, client, "v1", "v2")
	return client
}

func runUnary(b *testing.B, c greeterpb.GreeterClient, req *greeterpb.HelloRequest) {
	ctx := context.Background()
	if _, err := c.SayHello(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.SayHello(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTP compares one HTTP request through meshlet's client and
// server (xDS routing, weighted route, EDS endpoints, the balancer, mTLS
// with SPIFFE SVIDs, the authorization check) with plain net/http on
// loopback, plaintext and over the same mTLS, in the same run.
func BenchmarkHTTP(b *testing.B) {
	run := func(b *testing.B, c *http.Client, url string) {
		get := func() {
			if err := httpGet(c, url); err != nil {
				b.Fatal(err)
			}
		}
		get()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			get()
		}
	}
	b.Run("plain-http", func(b *testing.B) {
		srv := httptest.NewServer(plainHTTPGreeter())
		defer srv.Close()
		run(b, srv.Client(), srv.URL+"/")
	})
	b.Run("plain-https-mtls", func(b *testing.B) {
		c, url := plainMTLSHTTPClient(b)
		run(b, c, url)
	})
	b.Run("meshlet", func(b *testing.B) {
		c, url := meshletHTTPClient(b)
		run(b, c, url)
	})
	// Like for like with plain-https-mtls: one server, no route of its own;
	// then the same with every resilience policy configured.
	for _, v := range []struct {
		name  string
		files map[string]string
	}{{"meshlet-one-server", nil}, {"meshlet-all-policies", allPolicies}} {
		b.Run(v.name, func(b *testing.B) { runHTTPOneServer(b, run, v.files) })
	}
	for _, v := range telemetryVariants {
		b.Run("meshlet-one-server-"+v.name, func(b *testing.B) { runHTTPOneServer(b, run, nil, benchTelemetry(b, v.traced)) })
	}
}

// runHTTPOneServer runs the HTTP benchmark against one mesh server, with
// the config files files.
func runHTTPOneServer(b *testing.B, run func(*testing.B, *http.Client, string), files map[string]string, opts ...mesh.Option) {
	cp, _ := startControlPlane(b, files)
	serveHTTPGreeter(b, startMesh(b, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, opts...), "v1", nil)
	c := httpClientFor(b, startMesh(b, cp.XDSAddr(), "client", nil, opts...))
	meshtest.WaitUntil(b, 15*time.Second, "the server", func() bool {
		r, err := httpCall(b.Context(), c, "/", "")
		return err == nil && r.caller != "plaintext"
	})
	run(b, c, fmt.Sprintf("http://greeter:%d/", greeterPort))
}

// allPolicies configures every resilience policy for the greeter, none of
// which refuses a call of the benchmarks: a fault that hits one call in a
// million, a timeout and retries, limits, a retry budget and a breaker,
// and a rate limit per caller far above the load.
var allPolicies = map[string]string{
	"rule.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
  annotations:
    meshlet.io/circuit-breaker: consecutiveErrors=5,openFor=30s
spec:
  host: greeter
  trafficPolicy:
    connectionPool:
      http:
        http2MaxRequests: 100000
        maxRetries: 100
    retryBudget:
      percent: 20
      minRetryConcurrency: 3
`,
	"route.yaml": greeterRoute(toGreeter("", `    timeout: 10s
    retries:
      attempts: 2
      retryOn: unavailable,5xx
    fault:
      abort:
        httpStatus: 503
        percentage:
          value: 0.0001
`)),
	"ratelimit.yaml": rateLimit("greeter", "  limit: {requestsPerUnit: 1000000, unit: second, burst: 1000000}\n  perBucket: {principal: true, maxBuckets: 1000}\n"),
}

// plainHTTPGreeter is the plain servers' handler: the one the mesh
// servers serve, so that only the data plane differs.
func plainHTTPGreeter() http.Handler {
	g := &httpGreeter{}
	g.name("plain", "plain")
	return g
}

// httpGet makes one GET of url with c and reads the whole answer.
func httpGet(c *http.Client, url string) error {
	resp, err := c.Get(url)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d", resp.StatusCode)
	}
	return nil
}

// plainMTLSHTTPClient starts a plain net/http server over mTLS with the
// SVIDs meshlet uses, from a control plane's CA, and returns a plain
// client of it and its URL. The client keeps as many idle connections as
// meshlet's (64 per host), so that calls in parallel reuse them too.
func plainMTLSHTTPClient(b *testing.B) (*http.Client, string) {
	cp, _ := startControlPlane(b, nil)
	serverID := startMesh(b, cp.XDSAddr(), "greeter", nil).Identity()
	clientID := startMesh(b, cp.XDSAddr(), "client", nil).Identity()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", security.ServerTLSConfig(serverID, tlsconfig.AuthorizeAny()))
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: plainHTTPGreeter()}
	go srv.Serve(lis)
	b.Cleanup(func() { srv.Close() })
	tr := &http.Transport{
		TLSClientConfig:     security.ClientTLSConfig(clientID, tlsconfig.AuthorizeAny()),
		MaxIdleConnsPerHost: 64,
	}
	b.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}, "https://" + lis.Addr().String() + "/"
}

// meshletHTTPClient starts two mesh HTTP servers of the greeter, v1 and
// v2, routed 80/20, and returns a mesh HTTP client and the greeter's URL
// once the client calls over mTLS.
func meshletHTTPClient(b *testing.B) (*http.Client, string) {
	cp, _ := startControlPlane(b, map[string]string{
		"greeter-rules.yaml": greeterRules,
		"greeter-route.yaml": splitRoute(80, 20),
	})
	for _, v := range []string{"v1", "v2"} {
		m := startMesh(b, cp.XDSAddr(), "greeter", map[string]string{"version": v})
		serveHTTPGreeter(b, m, v, nil)
	}
	c := httpClientFor(b, startMesh(b, cp.XDSAddr(), "client", nil))
	meshtest.WaitUntil(b, 15*time.Second, "both versions", func() bool {
		r, err := httpCall(b.Context(), c, "/", "")
		return err == nil && r.version != "" && r.caller != "plaintext"
	})
	return c, fmt.Sprintf("http://greeter:%d/", greeterPort)
}
