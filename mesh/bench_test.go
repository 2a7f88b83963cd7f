package mesh_test

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
)

// BenchmarkUnary compares one unary RPC through meshlet (an xDS-routed
// client, weighted route, EDS endpoints, to a mesh server) with the same
// RPC between a plain grpc-go client and server, in the same process and
// run, so that the ratio is what to read on a noisy machine.
func BenchmarkUnary(b *testing.B) {
	req := &greeterpb.HelloRequest{Name: "bench"}
	b.Run("plain-grpc", func(b *testing.B) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := grpc.NewServer()
		greeterpb.RegisterGreeterServer(s, &greeter.Server{Version: "plain"})
		go s.Serve(lis)
		defer s.Stop()
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runUnary(b, greeterpb.NewGreeterClient(cc), req)
	})
	b.Run("meshlet", func(b *testing.B) {
		cp, _ := startControlPlane(b, map[string]string{
			"greeter-rules.yaml": greeterRules,
			"greeter-route.yaml": splitRoute(80, 20),
		})
		startGreeter(b, cp.XDSAddr(), "v1")
		startGreeter(b, cp.XDSAddr(), "v2")
		client := dialGreeter(b, startMesh(b, cp.XDSAddr(), "client", nil))
		waitServing(b, client, "v1", "v2")
		runUnary(b, client, req)
	})
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
