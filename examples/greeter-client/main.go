// Command greeter-client calls the example greeter service through the
// mesh and prints where the calls went, as its own process. It waits up
// to --wait for the service to answer, then makes --calls calls.
//
//	MESHLET_CONTROL_PLANE=127.0.0.1:15010 \
//	MESHLET_CONTROL_PLANE_ROOTS=$HOME/.local/state/meshlet/ca/root-cert.pem \
//	MESHLET_CA_TOKEN=example-client-token \
//	go run ./examples/greeter-client --calls 1000
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"slices"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
)

func main() {
	calls := flag.Int("calls", 1000, "calls to make")
	target := flag.String("target", "greeter:50051", "the service to call")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for the service to answer first")
	flag.Parse()
	if err := run(*target, *calls, *wait); err != nil {
		fmt.Fprintln(os.Stderr, "greeter-client:", err)
		os.Exit(1)
	}
}

func run(target string, calls int, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), wait+time.Minute)
	defer cancel()
	m, err := mesh.New(ctx, mesh.WithService("greeter-client"), mesh.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		return err
	}
	defer m.Close()
	cc, err := m.Dial(target)
	if err != nil {
		return err
	}
	defer cc.Close()
	c := greeterpb.NewGreeterClient(cc)
	// The first call waits for the service's endpoints.
	first, cancelFirst := context.WithTimeout(ctx, wait)
	_, err = c.SayHello(first, &greeterpb.HelloRequest{Name: "client"}, grpc.WaitForReady(true))
	cancelFirst()
	if err != nil {
		return fmt.Errorf("%s did not answer within %v: %w", target, wait, err)
	}
	counts := map[string]int{}
	failed := 0
	for range calls {
		r, err := c.SayHello(ctx, &greeterpb.HelloRequest{Name: "client"})
		if err != nil {
			failed++
			continue
		}
		counts[r.GetVersion()]++
	}
	for _, v := range slices.Sorted(maps.Keys(counts)) {
		fmt.Printf("%s: %d of %d (%.1f%%)\n", v, counts[v], calls, 100*float64(counts[v])/float64(calls))
	}
	fmt.Printf("failed: %d\n", failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d calls failed", failed, calls)
	}
	return nil
}
