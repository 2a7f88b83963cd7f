package mesh_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/localtrust"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

const greeterPort = 50051

// joinMesh joins the mesh at cpAddr as service with labels, as every test
// workload does, and with extra options. It does not fail the test, so
// that a goroutine of the test, and a child process, can use it.
func joinMesh(ctx context.Context, cpAddr, service string, labels map[string]string, extra ...mesh.Option) (*mesh.Mesh, error) {
	opts := []mesh.Option{
		mesh.WithService(service),
		mesh.WithLabels(labels),
		mesh.WithControlPlane(cpAddr),
		mesh.WithLogger(meshtest.Logger()),
		mesh.WithDrainTimeout(3 * time.Second),
	}
	return mesh.New(ctx, append(opts, extra...)...)
}

// startMesh joins the mesh as service with labels, and extra options,
// until the test ends.
func startMesh(t testing.TB, cpAddr, service string, labels map[string]string, extra ...mesh.Option) *mesh.Mesh {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	m, err := joinMesh(ctx, cpAddr, service, labels, extra...)
	if err != nil {
		t.Fatalf("mesh.New(%s): %v", service, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// instance is one greeter server in the mesh.
type instance struct {
	server *mesh.GRPCServer
	addr   string
}

// startGreeter starts a greeter instance of version on a free loopback port.
func startGreeter(t testing.TB, cpAddr, version string) *instance {
	t.Helper()
	return startGreeterWith(t, cpAddr, version, nil)
}

// startGreeterWith starts an instance that serves impl, or the plain
// greeter when impl is nil, with server options opts.
func startGreeterWith(t testing.TB, cpAddr, version string, impl greeterpb.GreeterServer, opts ...mesh.ServerOption) *instance {
	t.Helper()
	return serveGreeter(t, startMesh(t, cpAddr, "greeter", map[string]string{"version": version}), version, impl, opts...)
}

// serveGreeter serves impl (the plain greeter when nil) as an instance of
// m, with opts, on a free loopback port until the test ends.
func serveGreeter(t testing.TB, m *mesh.Mesh, version string, impl greeterpb.GreeterServer, opts ...mesh.ServerOption) *instance {
	t.Helper()
	lis := listen(t, "127.0.0.1:0")
	s, err := newGRPCGreeter(m, lis, version, impl, opts...)
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, s, lis)
	return &instance{server: s, addr: lis.Addr().String()}
}

// newGRPCGreeter returns m's gRPC server of the greeter service for lis,
// with opts, serving impl (the plain greeter of version when nil), which
// it tells its version and address if impl is named.
func newGRPCGreeter(m *mesh.Mesh, lis net.Listener, version string, impl greeterpb.GreeterServer, opts ...mesh.ServerOption) (*mesh.GRPCServer, error) {
	s, err := m.NewGRPCServer(append([]mesh.ServerOption{mesh.WithServicePort(greeterPort)}, opts...)...)
	if err != nil {
		return nil, err
	}
	if impl == nil {
		impl = &greeter.Server{Version: version, Instance: lis.Addr().String()}
	}
	if n, ok := impl.(named); ok {
		n.name(version, lis.Addr().String())
	}
	greeterpb.RegisterGreeterServer(s, impl)
	return s, nil
}

// newGreeterServer returns m's plain greeter of version for lis, over
// proto: "http", or the name of a serverKind ("grpc" is the default one).
func newGreeterServer(m *mesh.Mesh, lis net.Listener, proto, version string) (meshServer, error) {
	if proto == "http" {
		return newHTTPGreeter(m, lis, version, nil)
	}
	for _, k := range serverKinds {
		if k.name == proto {
			return newGRPCGreeter(m, lis, version, nil, k.opts...)
		}
	}
	return newGRPCGreeter(m, lis, version, nil)
}

// serverKind is a kind of mesh gRPC server: meshlet's native one, the
// default, or gRPC-Go's xDS server.
type serverKind struct {
	name string
	opts []mesh.ServerOption
}

// serverKinds are the gRPC servers that tests about serving run on.
var serverKinds = []serverKind{
	{"native-server", nil},
	{"xds-server", []mesh.ServerOption{mesh.WithXDSServer()}},
}

// meshServer is a mesh server of either transport.
type meshServer interface {
	Serve(net.Listener) error
	Stop()
}

// serveUntilCleanup serves s on lis until the test ends. It does not fail
// the test, so that a goroutine of the test can use it.
func serveUntilCleanup(t testing.TB, s meshServer, lis net.Listener) {
	done := make(chan error, 1)
	go func() { done <- s.Serve(lis) }()
	t.Cleanup(func() {
		s.Stop()
		<-done
	})
}

// listen listens on addr, "127.0.0.1:0" for a free loopback port, until
// the test ends.
func listen(t testing.TB, addr string) net.Listener {
	t.Helper()
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	return lis
}

// dialGreeter returns a client of the greeter service.
func dialGreeter(t testing.TB, m *mesh.Mesh) greeterpb.GreeterClient {
	t.Helper()
	return dial(t, m, fmt.Sprintf("greeter:%d", greeterPort))
}

// dial returns m's Greeter client of target, until the test ends.
func dial(t testing.TB, m *mesh.Mesh, target string) greeterpb.GreeterClient {
	t.Helper()
	cc, err := m.Dial(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return greeterpb.NewGreeterClient(cc)
}

// tally counts replies by version, and failures.
type tally struct {
	mu       sync.Mutex
	byKey    map[string]int
	failures int
	lastErr  error
}

func (t *tally) add(key string, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.byKey == nil {
		t.byKey = map[string]int{}
	}
	if err != nil {
		t.failures++
		t.lastErr = err
		return
	}
	t.byKey[key]++
}

// call makes one RPC, with end-user set when user is not empty.
func call(ctx context.Context, c greeterpb.GreeterClient, user string) (*greeterpb.HelloReply, error) {
	if user != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "end-user", user)
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	return c.SayHello(ctx, &greeterpb.HelloRequest{Name: "test"})
}

// countVersions makes n sequential RPCs and counts the versions that
// answered.
func countVersions(t testing.TB, c greeterpb.GreeterClient, n int, user string) *tally {
	t.Helper()
	var out tally
	for range n {
		r, err := call(t.Context(), c, user)
		out.add(r.GetVersion(), err)
	}
	return &out
}

// waitServing waits until RPCs reach every version in want.
func waitServing(t testing.TB, c greeterpb.GreeterClient, want ...string) {
	t.Helper()
	waitVersions(t, grpcCaller(t, c), want...)
}

// waitServingHTTP waits until HTTP requests reach every version in want.
func waitServingHTTP(t testing.TB, c *http.Client, want ...string) {
	t.Helper()
	waitVersions(t, httpCaller(t, c), want...)
}

// waitVersions waits until calls answer from every version in want.
func waitVersions(t testing.TB, call callerFunc, want ...string) {
	t.Helper()
	seen := map[string]bool{}
	meshtest.WaitUntil(t, 15*time.Second, fmt.Sprintf("versions %v to answer", want), func() bool {
		version, _, err := call()
		if err == nil {
			seen[version] = true
		}
		for _, v := range want {
			if !seen[v] {
				return false
			}
		}
		return true
	})
}

// registered returns how many instances serve, per the control plane's
// /debug/config.
func registered(t *testing.T, cp *controlplane.Server) int {
	resp, err := http.Get("http://" + cp.AdminAddr() + "/debug/config")
	if err != nil {
		t.Logf("debug/config: %v", err)
		return -1
	}
	defer resp.Body.Close()
	var d controlplane.ConfigDump
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatalf("decode /debug/config: %v", err)
	}
	n := 0
	for _, e := range d.Instances {
		if e.State == "SERVING" {
			n++
		}
	}
	return n
}

// waitRegistered waits until n instances serve, per the control plane's
// /debug/config.
func waitRegistered(t *testing.T, cp *controlplane.Server, n int) {
	t.Helper()
	meshtest.WaitUntil(t, 15*time.Second, fmt.Sprintf("%d instances to register", n), func() bool { return registered(t, cp) == n })
}

// startControlPlane starts a control plane with files in a new config
// directory and returns it with the directory.
func startControlPlane(t testing.TB, files map[string]string, opts ...controlplane.Option) (*controlplane.Server, string) {
	t.Helper()
	dir := meshtest.WriteConfig(t, files)
	return meshtest.StartControlPlane(t, dir, opts...), dir
}

// childEnv is set when the test binary runs as a greeter child process,
// which the abrupt-stop test kills.
const childEnv = "MESHLET_TEST_GREETER_CHILD"

// runChild serves a greeter until killed. Its first line of output is
// "ready <address>".
func runChild() {
	fail := func(err error) {
		fmt.Println("error", err)
		os.Exit(1)
	}
	cpAddr, rest, _ := strings.Cut(os.Getenv(childEnv), ",")
	proto, version, _ := strings.Cut(rest, ",")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	m, err := joinMesh(ctx, cpAddr, "greeter", map[string]string{"version": version})
	cancel()
	if err != nil {
		fail(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail(err)
	}
	s, err := newGreeterServer(m, lis, proto, version)
	if err != nil {
		fail(err)
	}
	fmt.Println("ready", lis.Addr().String())
	s.Serve(lis)
}

// startChild runs a greeter of version over proto ("http" or "grpc") in a
// child process, which the test can kill as a crash would: no
// deregistration, connections reset by the kernel.
func startChild(t testing.TB, cpAddr, proto, version string) (*exec.Cmd, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	// Another process trusts the control plane through its root file, as
	// a service started by hand would.
	roots := certfile.Encode(localtrust.Roots(cpAddr))
	rootsFile := filepath.Join(t.TempDir(), "roots.pem")
	if err := os.WriteFile(rootsFile, roots, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), childEnv+"="+cpAddr+","+proto+","+version, mesh.EnvControlPlaneRoots+"="+rootsFile)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "ready ") {
		t.Fatalf("greeter child did not start: %q %v", line, err)
	}
	return cmd, strings.TrimSpace(strings.TrimPrefix(line, "ready "))
}

// startPlainGreeter starts a greeter on a plain grpc.Server with opts,
// outside the mesh, and returns its address.
func startPlainGreeter(t testing.TB, version string, opts ...grpc.ServerOption) string {
	t.Helper()
	lis := listen(t, "127.0.0.1:0")
	s := grpc.NewServer(opts...)
	greeterpb.RegisterGreeterServer(s, &greeter.Server{Version: version, Instance: lis.Addr().String()})
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func splitHostPort(t testing.TB, addr string) (string, int) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		t.Fatal(err)
	}
	return h, port
}

// waitCall makes an RPC until one succeeds, for up to 15s, and returns
// its reply: the first call of a new client waits for its xDS config. It
// logs each new error the calls meet, so that a wait that fails says why.
func waitCall(t testing.TB, c greeterpb.GreeterClient, what string) *greeterpb.HelloReply {
	t.Helper()
	var r *greeterpb.HelloReply
	var last string
	meshtest.WaitUntil(t, 15*time.Second, what, func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		var err error
		r, err = c.SayHello(ctx, &greeterpb.HelloRequest{Name: "test"}, grpc.WaitForReady(true))
		if err != nil && err.Error() != last {
			last = err.Error()
			t.Logf("waiting for %s: %v", what, err)
		}
		return err == nil
	})
	return r
}
