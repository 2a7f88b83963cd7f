package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
)

// A server and a caller in one mesh, routed by a VirtualService that sends
// every call to v2.
func Example() {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))

	dir, _ := os.MkdirTemp("", "meshlet-example-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "greeter.yaml"), []byte(greeterRules+"---\n"+splitRoute(0, 100)), 0o644)
	// The control plane's CA issues each workload its SPIFFE identity,
	// authenticated by a token per workload.
	cp, err := controlplane.Start(ctx, controlplane.WithConfigDir(dir), controlplane.WithStateDir(filepath.Join(os.TempDir(), "meshlet-example-state")),
		controlplane.WithXDSAddress("127.0.0.1:0"), controlplane.WithAdminAddress(""), controlplane.WithLogger(quiet),
		controlplane.WithCAToken("greeter-token", controlplane.Identity{Namespace: "default", ServiceAccount: "greeter"}),
		controlplane.WithCAToken("caller-token", controlplane.Identity{Namespace: "default", ServiceAccount: "caller"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Close()

	for _, version := range []string{"v1", "v2"} {
		m, err := mesh.New(ctx, mesh.WithService("greeter"), mesh.WithLabels(map[string]string{"version": version}),
			mesh.WithControlPlane(cp.XDSAddr()), mesh.WithCAToken("greeter-token"), mesh.WithLogger(quiet))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer m.Close()
		srv, _ := m.NewGRPCServer(mesh.WithServicePort(50051))
		greeterpb.RegisterGreeterServer(srv, &greeter.Server{Version: version})
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		go srv.Serve(lis)
		defer srv.GracefulStop()
	}

	caller, err := mesh.New(ctx, mesh.WithService("caller"), mesh.WithControlPlane(cp.XDSAddr()),
		mesh.WithCAToken("caller-token"), mesh.WithLogger(quiet))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer caller.Close()
	cc, _ := caller.Dial("greeter:50051")
	defer cc.Close()
	reply, err := greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: "mesh"}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.GetMessage(), "from", reply.GetVersion())
	fmt.Println("caller is", caller.SPIFFEID())
	// Output:
	// hello mesh from v2
	// caller is spiffe://cluster.local/ns/default/sa/caller
}

// A net/http server and client in one mesh, routed and secured by the same
// config as gRPC: the server's AuthorizationPolicy lets only the caller's
// identity in.
func Example_http() {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, _ := os.MkdirTemp("", "meshlet-example-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: web
spec:
  selector:
    matchLabels:
      app: web
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/caller
`), 0o644)
	cp, err := controlplane.Start(ctx, controlplane.WithConfigDir(dir), controlplane.WithStateDir(filepath.Join(os.TempDir(), "meshlet-example-state")), controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress(""), controlplane.WithLogger(quiet), controlplane.WithCAInsecureDev(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Close()

	web, err := mesh.New(ctx, mesh.WithService("web"), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithLogger(quiet))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer web.Close()
	srv, _ := web.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello %s", r.TLS.PeerCertificates[0].URIs[0])
	}), mesh.WithServicePort(8080))
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	defer srv.Shutdown(ctx)

	for _, who := range []string{"caller", "stranger"} {
		m, err := mesh.New(ctx, mesh.WithService(who), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithLogger(quiet))
		if err != nil {
			fmt.Println(err)
			return
		}
		defer m.Close()
		// The server enters callers' endpoints once it has its policy.
		wait, cancel := context.WithTimeout(ctx, 10*time.Second)
		err = m.WaitRoutable(wait, "web:8080")
		cancel()
		if err != nil {
			fmt.Println(err)
			return
		}
		client, _ := m.HTTPClient(ctx)
		resp, err := client.Get("http://web:8080/")
		if err != nil {
			fmt.Println(err)
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		fmt.Println(who, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	// Output:
	// caller 200 hello spiffe://cluster.local/ns/default/sa/caller
	// stranger 403 RBAC: access denied: incoming request did not match an allow policy
}

// A caller that waits for its dependency before it starts serving:
// WaitRoutable returns once the greeter has a host, routes, and an
// endpoint in every cluster its routes send to, and says what is missing
// when it gives up.
func ExampleMesh_WaitRoutable() {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, _ := os.MkdirTemp("", "meshlet-example-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "greeter.yaml"), []byte(greeterRules+"---\n"+splitRoute(50, 50)), 0o644)
	cp, err := controlplane.Start(ctx, controlplane.WithConfigDir(dir), controlplane.WithStateDir(filepath.Join(os.TempDir(), "meshlet-example-state")),
		controlplane.WithXDSAddress("127.0.0.1:0"), controlplane.WithAdminAddress(""), controlplane.WithLogger(quiet), controlplane.WithCAInsecureDev(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Close()
	join := func(service string, labels map[string]string) *mesh.Mesh {
		m, err := mesh.New(ctx, mesh.WithService(service), mesh.WithLabels(labels), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithLogger(quiet))
		if err != nil {
			panic(err)
		}
		return m
	}
	serve := func(version string) func() {
		m := join("greeter", map[string]string{"version": version})
		srv, _ := m.NewGRPCServer(mesh.WithServicePort(50051))
		greeterpb.RegisterGreeterServer(srv, &greeter.Server{Version: version})
		lis, _ := net.Listen("tcp", "127.0.0.1:0")
		go srv.Serve(lis)
		return func() { srv.GracefulStop(); m.Close() }
	}
	caller := join("caller", nil)
	defer caller.Close()

	// No greeter has registered: there is no such host yet.
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	err = caller.WaitRoutable(short, "greeter:50051")
	cancel()
	fmt.Println("no such host:", errors.Is(err, mesh.ErrUnknownHost))

	// v1 serves; the route sends half the calls to v2, which has none.
	defer serve("v1")()
	short, cancel = context.WithTimeout(ctx, 2*time.Second)
	fmt.Println(caller.WaitRoutable(short, "greeter:50051"))
	cancel()

	defer serve("v2")()
	fmt.Println("routable:", caller.WaitRoutable(ctx, "greeter:50051"))
	// Output:
	// no such host: true
	// mesh: greeter:50051 is not routable: cluster outbound|50051|v2|greeter.default.svc.cluster.local (subset "v2" of greeter.default.svc.cluster.local:50051) has no endpoints (no server of it is registered and serving): context deadline exceeded
	// routable: <nil>
}

// A caller that makes its own ClientConn: grpc.NewClient with a
// meshlet:/// target and the mesh's dial options routes, balances and
// secures it as Dial does.
func ExampleMesh_DialOptions() {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, _ := os.MkdirTemp("", "meshlet-example-")
	defer os.RemoveAll(dir)
	cp, err := controlplane.Start(ctx, controlplane.WithConfigDir(dir), controlplane.WithStateDir(filepath.Join(os.TempDir(), "meshlet-example-state")), controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress(""), controlplane.WithLogger(quiet), controlplane.WithCAInsecureDev(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Close()

	server, err := mesh.New(ctx, mesh.WithService("greeter"), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithLogger(quiet))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer server.Close()
	srv, _ := server.NewGRPCServer(mesh.WithServicePort(50051))
	greeterpb.RegisterGreeterServer(srv, &greeter.Server{Version: "v1"})
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	defer srv.GracefulStop()

	caller, err := mesh.New(ctx, mesh.WithService("caller"), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithLogger(quiet))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer caller.Close()
	cc, err := grpc.NewClient("meshlet:///greeter:50051", caller.DialOptions()...)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	reply, err := greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: "mesh"}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.GetMessage(), "from", reply.GetVersion())
	// Output:
	// hello mesh from v1
}
