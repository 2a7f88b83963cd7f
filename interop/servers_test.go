package interop_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// servicePort is the port every Greeter service of the tests is known by.
const servicePort = 7070

// backend is a set of Greeter servers in one language, with the config
// that makes them services of the mesh: <lang>-greeter (v1 and v2, split
// 80/20), <lang>-match (v1 and v2; end-user: jason goes to v2, the rest
// to v1), <lang>-flaky (one server that answers, one that fails every
// call UNAVAILABLE; retries on unavailable) and <lang>-slow (a server
// that answers after 3s; a route timeout of 500ms).
type backend struct {
	lang string // "go", "python" or "node"
	// calls counts the calls a server of a service and version got, for
	// the servers that count them.
	calls func(service, version string) int
}

// The route timeout of <lang>-slow, and how long its server waits.
const (
	routeTimeout = 500 * time.Millisecond
	slowDelay    = 3 * time.Second
)

// backendServers are the servers of a backend: service -> version ->
// options.
var backendServers = map[string]map[string]serverOptions{
	"greeter": {"v1": {}, "v2": {}},
	"match":   {"v1": {}, "v2": {}},
	"flaky":   {"ok": {}, "fail": {fail: true}},
	"slow":    {"v1": {delay: slowDelay}},
}

// host is the short host of a backend's service.
func host(lang, service string) string { return lang + "-" + service }

// target is the xds:/// target of a backend's service.
func target(lang, service string) string {
	return fmt.Sprintf("xds:///%s.default.svc.cluster.local:%d", host(lang, service), servicePort)
}

// routesConfig is the DestinationRules and VirtualServices of lang's
// backend.
func routesConfig(lang string) string {
	subsets := func(service string, versions ...string) string {
		s := fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: %[1]s\nspec:\n  host: %[1]s\n  subsets:\n", host(lang, service))
		for _, v := range versions {
			s += fmt.Sprintf("  - name: %[1]s\n    labels:\n      version: %[1]s\n", v)
		}
		return s
	}
	vs := func(service, http string) string {
		return fmt.Sprintf("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: %[1]s\nspec:\n  hosts:\n  - %[1]s\n  http:\n%[2]s", host(lang, service), http)
	}
	return strings.Join([]string{
		subsets("greeter", "v1", "v2"),
		vs("greeter", fmt.Sprintf(`  - route:
    - destination:
        host: %[1]s
        subset: v1
      weight: 80
    - destination:
        host: %[1]s
        subset: v2
      weight: 20
`, host(lang, "greeter"))),
		subsets("match", "v1", "v2"),
		vs("match", fmt.Sprintf(`  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: %[1]s
        subset: v2
  - route:
    - destination:
        host: %[1]s
        subset: v1
`, host(lang, "match"))),
		vs("flaky", fmt.Sprintf(`  - route:
    - destination:
        host: %s
    retries:
      attempts: 4
      retryOn: unavailable
`, host(lang, "flaky"))),
		vs("slow", fmt.Sprintf(`  - route:
    - destination:
        host: %s
    timeout: %s
`, host(lang, "slow"), routeTimeout)),
	}, "---\n")
}

// staticConfig is the ServiceEntries and WorkloadEntries that make plain
// servers (outside the mesh) the services of lang's backend.
func staticConfig(lang string, servers map[string]map[string]server) string {
	var docs []string
	for service, versions := range servers {
		h := host(lang, service)
		docs = append(docs, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %[1]s
spec:
  hosts:
  - %[1]s
  ports:
  - number: %[2]d
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: %[1]s
`, h, servicePort))
		for version, s := range versions {
			docs = append(docs, fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %[1]s-%[2]s
spec:
  address: 127.0.0.1
  ports:
    grpc: %[3]d
  labels:
    app: %[1]s
    version: %[2]s
`, h, version, s.port))
		}
	}
	return strings.Join(docs, "---\n")
}

// startPlainBackend starts lang's plain servers, and returns the backend
// with its config files.
func startPlainBackend(t testing.TB, lang language) (backend, map[string]string) {
	t.Helper()
	servers := map[string]map[string]server{}
	for service, versions := range backendServers {
		servers[service] = map[string]server{}
		for version, o := range versions {
			servers[service][version] = startServer(t, lang, version, o)
		}
	}
	b := backend{lang: lang.name, calls: func(service, version string) int {
		return servers[service][version].calls()
	}}
	return b, map[string]string{
		lang.name + "-routes.yaml":   routesConfig(lang.name),
		lang.name + "-services.yaml": staticConfig(lang.name, servers),
	}
}

// goBackendConfig is the config of the Go backend: its services are made
// by the servers' registrations.
func goBackendConfig() map[string]string {
	return map[string]string{"go-routes.yaml": routesConfig("go")}
}

// startGoBackend starts the Go backend's meshlet servers, each in a mesh
// of its own, and waits until they are registered.
func startGoBackend(t testing.TB, cp *controlplane.Server) backend {
	t.Helper()
	greeters := map[string]*goGreeter{}
	n := 0
	for service, versions := range backendServers {
		for version, o := range versions {
			greeters[service+"/"+version] = startGoServer(t, cp, host("go", service), version, o)
			n++
		}
	}
	meshtest.WaitUntil(t, 15*time.Second, fmt.Sprintf("%d Go servers to serve", n), func() bool {
		serving := 0
		for _, e := range cp.Dump().Instances {
			if e.State == "SERVING" {
				serving++
			}
		}
		return serving == n
	})
	return backend{lang: "go", calls: func(service, version string) int {
		return int(greeters[service+"/"+version].calls.Load())
	}}
}

// goGreeter is a meshlet Go Greeter server's implementation.
type goGreeter struct {
	greeterpb.UnimplementedGreeterServer
	version, instance string
	o                 serverOptions
	calls             atomic.Int64
	mu                sync.Mutex
	serials           map[string]bool // of the client certificates it saw
}

// caller is who called: the SPIFFE ID of the peer's certificate, or
// "plaintext". It records the certificate's serial number.
func (g *goGreeter) caller(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "plaintext"
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return "plaintext"
	}
	cert := ti.State.PeerCertificates[0]
	g.mu.Lock()
	if g.serials == nil {
		g.serials = map[string]bool{}
	}
	g.serials[cert.SerialNumber.String()] = true
	g.mu.Unlock()
	if len(cert.URIs) == 0 {
		return "no SPIFFE ID"
	}
	return cert.URIs[0].String()
}

// certificates is how many client certificates the server saw.
func (g *goGreeter) certificates() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.serials)
}

func (g *goGreeter) SayHello(ctx context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	g.calls.Add(1)
	if g.o.delay > 0 {
		select {
		case <-time.After(g.o.delay):
		case <-ctx.Done():
			return nil, status.FromContextError(ctx.Err()).Err()
		}
	}
	if g.o.fail {
		return nil, status.Errorf(codes.Unavailable, "%s fails on purpose", g.instance)
	}
	// The message says who called, for the mTLS tests.
	return &greeterpb.HelloReply{Message: g.caller(ctx), Version: g.version, Instance: g.instance}, nil
}

// startGoServer starts a meshlet gRPC server of service and version on a
// free loopback port, in a mesh of its own, until the test ends.
func startGoServer(t testing.TB, cp *controlplane.Server, service, version string, o serverOptions, extra ...mesh.Option) *goGreeter {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	m, err := mesh.New(ctx, append([]mesh.Option{
		mesh.WithService(service),
		mesh.WithLabels(map[string]string{"version": version}),
		mesh.WithControlPlane(cp.XDSAddr()),
		mesh.WithLogger(meshtest.Logger()),
		mesh.WithDrainTimeout(time.Second),
	}, extra...)...)
	if err != nil {
		t.Fatalf("interop: mesh.New(%s): %v", service, err)
	}
	t.Cleanup(func() { m.Close() })
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.NewGRPCServer(mesh.WithServicePort(servicePort))
	if err != nil {
		t.Fatal(err)
	}
	g := &goGreeter{version: version, instance: lis.Addr().String(), o: o}
	greeterpb.RegisterGreeterServer(s, g)
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
	return g
}
