package grpcxds_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	_ "github.com/meshlet/meshlet/mesh/grpcxds"
)

// A caller that dials through gRPC-Go's own xDS client, and a server that
// is gRPC-Go's xDS server, against the same control plane as meshlet's
// native path.
func Example() {
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
	srv, err := server.NewGRPCServer(mesh.WithServicePort(50051), mesh.WithXDSServer())
	if err != nil {
		fmt.Println(err)
		return
	}
	greeterpb.RegisterGreeterServer(srv, &greeter.Server{Version: "v1"})
	lis, _ := net.Listen("tcp", "127.0.0.1:0")
	go srv.Serve(lis)
	defer srv.GracefulStop()

	caller, err := mesh.New(ctx, mesh.WithService("caller"), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithLogger(quiet), mesh.WithGRPCGoXDS())
	if err != nil {
		fmt.Println(err)
		return
	}
	defer caller.Close()
	cc, err := caller.Dial("greeter:50051")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()
	reply, err := greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: "xds"}, grpc.WaitForReady(true))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(reply.GetMessage(), "from", reply.GetVersion())
	// Output:
	// hello xds from v1
}
