// Command greeter-server is one instance of the example greeter service,
// as its own process: it joins the mesh with the environment's settings,
// serves gRPC on --listen, registers with the control plane while it
// serves, and drains on SIGINT or SIGTERM.
//
//	MESHLET_CONTROL_PLANE=127.0.0.1:15010 \
//	MESHLET_CONTROL_PLANE_ROOTS=$HOME/.local/state/meshlet/ca/root-cert.pem \
//	MESHLET_CA_TOKEN=example-greeter-token \
//	go run ./examples/greeter-server --version v1 --listen 127.0.0.1:50051
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
)

func main() {
	version := flag.String("version", "v1", "the version label of this instance")
	listen := flag.String("listen", "127.0.0.1:50051", "address to serve on")
	port := flag.Uint("service-port", 50051, "the port callers name (greeter:<port>)")
	flag.Parse()
	if err := run(*version, *listen, uint32(*port)); err != nil {
		fmt.Fprintln(os.Stderr, "greeter-server:", err)
		os.Exit(1)
	}
}

func run(version, listen string, port uint32) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	joinCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	m, err := mesh.New(joinCtx, mesh.WithService("greeter"), mesh.WithLabels(map[string]string{"version": version}), mesh.WithLogger(log))
	cancel()
	if err != nil {
		return err
	}
	defer m.Close()
	srv, err := m.NewGRPCServer(mesh.WithServicePort(port))
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	greeterpb.RegisterGreeterServer(srv, &greeter.Server{Version: version, Instance: lis.Addr().String()})
	fmt.Printf("greeter %s serving on %s as %s\n", version, lis.Addr(), m.SPIFFEID())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
	}
	fmt.Println("draining")
	srv.GracefulStop()
	return <-done
}
