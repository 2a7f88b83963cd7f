//go:build unix

package mesh_test

import (
	"context"
	"runtime"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/security"
)

// BenchmarkGRPCServer compares the two gRPC servers a mesh can run,
// meshlet's native one and gRPC-Go's xDS server, under the same STRICT
// mTLS and an ALLOW AuthorizationPolicy that the server checks on every
// call, and the same clients: a mesh client (gRPC-Go's xDS client, mTLS
// from the cluster's TLS context), and a plain gRPC client that dials the
// server with the client's SVID, without xDS, so that the server's share
// of a call shows. Each makes one call at a time, then 8 in flight.
// Allocations are the whole process's, client and server. So is
// cpu-ns/op, the process's CPU time (user and system) per call: on a
// shared machine it moves less than ns/op with what else runs.
func BenchmarkGRPCServer(b *testing.B) {
	req := &greeterpb.HelloRequest{Name: "bench"}
	for _, kind := range serverKinds {
		b.Run(kind.name, func(b *testing.B) {
			cp, _ := startControlPlane(b, map[string]string{
				"peer-authentication.yaml": strictMesh,
				"allow-client.yaml":        authzPolicy("allow-client", "ALLOW", "client"),
				"greeter-rules.yaml":       greeterRules,
				"greeter-route.yaml":       splitRoute(100, 0),
			})
			server := startGreeterWith(b, cp.XDSAddr(), "v1", nil, kind.opts...)
			cm := startMesh(b, cp.XDSAddr(), "client", nil)
			meshClient := dialGreeter(b, cm)
			waitServing(b, meshClient, "v1")
			cc, err := grpc.NewClient(server.addr, grpc.WithTransportCredentials(credentials.NewTLS(security.ClientTLSConfig(cm.Identity(), nil))))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { cc.Close() })
			for _, c := range []struct {
				name   string
				client greeterpb.GreeterClient
			}{
				{"mesh-client", meshClient},
				{"direct-client", greeterpb.NewGreeterClient(cc)},
			} {
				b.Run(c.name+"/unary", func(b *testing.B) {
					defer reportCPU(b)()
					runUnary(b, c.client, req)
				})
				b.Run(c.name+"/parallel-8", func(b *testing.B) {
					// RunParallel runs parallelism × GOMAXPROCS goroutines.
					b.SetParallelism(max(1, 8/runtime.GOMAXPROCS(0)))
					b.ReportAllocs()
					defer reportCPU(b)()
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						ctx := context.Background()
						for pb.Next() {
							if _, err := c.client.SayHello(ctx, req); err != nil {
								b.Error(err)
								return
							}
						}
					})
				})
			}
		})
	}
}

// reportCPU starts counting the process's CPU time; the function it
// returns reports it as cpu-ns/op.
func reportCPU(b *testing.B) func() {
	began := cpuTime(b)
	return func() { b.ReportMetric(float64(cpuTime(b)-began)/float64(b.N), "cpu-ns/op") }
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
