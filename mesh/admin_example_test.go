package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
)

// The admin handler on a loopback admin port: after a call, the caller's
// clusters page shows the greeter's endpoint.
func ExampleMesh_AdminHandler() {
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dir, _ := os.MkdirTemp("", "meshlet-example-")
	defer os.RemoveAll(dir)
	cp, err := controlplane.Start(ctx, controlplane.WithConfigDir(dir), controlplane.WithStateDir(filepath.Join(os.TempDir(), "meshlet-example-state")),
		controlplane.WithXDSAddress("127.0.0.1:0"), controlplane.WithAdminAddress(""), controlplane.WithLogger(quiet),
		controlplane.WithCAToken("greeter-token", controlplane.Identity{Namespace: "default", ServiceAccount: "greeter"}),
		controlplane.WithCAToken("caller-token", controlplane.Identity{Namespace: "default", ServiceAccount: "caller"}))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Close()

	server, err := mesh.New(ctx, mesh.WithService("greeter"), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithCAToken("greeter-token"), mesh.WithLogger(quiet))
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

	// The pages expose internals: serve them on loopback only.
	caller, err := mesh.New(ctx, mesh.WithService("caller"), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithCAToken("caller-token"),
		mesh.WithLogger(quiet), mesh.WithAdminAddress("127.0.0.1:0"))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer caller.Close()
	cc, _ := caller.Dial("greeter:50051")
	defer cc.Close()
	if _, err := greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: "admin"}, grpc.WaitForReady(true)); err != nil {
		fmt.Println(err)
		return
	}

	resp, err := http.Get("http://" + caller.AdminAddr() + "/debug/clusters")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	var page struct {
		Clusters []struct {
			Name      string
			Endpoints []struct {
				Address string
				Healthy bool
			}
		}
	}
	json.NewDecoder(resp.Body).Decode(&page)
	for _, c := range page.Clusters {
		for _, e := range c.Endpoints {
			fmt.Println(c.Name, "endpoint", e.Address == lis.Addr().String(), "healthy", e.Healthy)
		}
	}
	// Output:
	// outbound|50051||greeter.default.svc.cluster.local endpoint true healthy true
}
