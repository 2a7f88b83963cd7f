// Command meshservice is the memory benchmark's service with meshlet: one
// mesh.New, a gRPC server and an HTTP server of the mesh (service rss),
// and a mesh gRPC client and HTTP client calling them through the mesh.
// It joins the control plane the environment names, as every workload
// in its own process does (MESHLET_CONTROL_PLANE,
// MESHLET_CONTROL_PLANE_ROOTS, MESHLET_CA_TOKEN).
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/meshlet/meshlet/bench/rss/internal/workload"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
)

// The ports callers name: rss:50051 (gRPC) and http://rss:8080/.
const (
	grpcPort = 50051
	httpPort = 8080
)

func main() {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	m, err := mesh.New(ctx, mesh.WithService("rss"), mesh.WithLogger(log))
	cancel()
	if err != nil {
		workload.Fail(err)
	}
	gs, err := m.NewGRPCServer(mesh.WithServicePort(grpcPort))
	if err != nil {
		workload.Fail(err)
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		workload.Fail(err)
	}
	greeterpb.RegisterGreeterServer(gs, &greeter.Server{Version: "mesh", Instance: glis.Addr().String()})
	go gs.Serve(glis)
	hs, err := m.NewHTTPServer(workload.Handler, mesh.WithServicePort(httpPort))
	if err != nil {
		workload.Fail(err)
	}
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		workload.Fail(err)
	}
	go hs.Serve(hlis)

	cc, err := m.Dial(fmt.Sprintf("rss:%d", grpcPort))
	if err != nil {
		workload.Fail(err)
	}
	gc := greeterpb.NewGreeterClient(cc)
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	hc, err := m.HTTPClient(ctx, mesh.WithUnknownHosts(mesh.Refuse)) // nothing outside the mesh, nothing looked up
	cancel()
	if err != nil {
		workload.Fail(err)
	}
	url := fmt.Sprintf("http://rss:%d/", httpPort)
	grpcCall := func(ctx context.Context) error {
		_, err := gc.SayHello(ctx, &greeterpb.HelloRequest{Name: "rss"})
		return err
	}
	httpCall := func(ctx context.Context) error { return workload.Get(ctx, hc, url) }
	workload.WaitFirst(context.Background(), "gRPC", grpcCall)
	workload.WaitFirst(context.Background(), "HTTP", httpCall)
	workload.Serve(grpcCall, httpCall)
	// Leave the mesh cleanly, so that the next run's instance is the
	// only one the control plane knows.
	hs.Stop()
	gs.Stop()
	cc.Close()
	m.Close()
}
