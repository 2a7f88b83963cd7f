package mesh_test

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"sync"
	"testing"

	"github.com/meshlet/meshlet/examples/greeterpb"
)

// inflightLevels are the numbers of calls the parallel benchmarks keep in
// flight: a busy service's few, and many.
var inflightLevels = []int{8, 64}

// BenchmarkUnaryParallel is BenchmarkUnary with 8 and then 64 RPCs in
// flight on one client connection: what a loaded client pays per call,
// where contention on meshlet's shared state (picker, drain tracking)
// would show and a sequential benchmark would hide it.
func BenchmarkUnaryParallel(b *testing.B) {
	req := &greeterpb.HelloRequest{Name: "bench"}
	for _, n := range inflightLevels {
		b.Run(fmt.Sprintf("inflight-%d", n), func(b *testing.B) {
			b.Run("plain-grpc-mtls", func(b *testing.B) {
				runUnaryParallel(b, n, plainMTLSGreeterClient(b), req)
			})
			b.Run("meshlet", func(b *testing.B) {
				runUnaryParallel(b, n, meshletGreeterClient(b), req)
			})
		})
	}
}

func runUnaryParallel(b *testing.B, inflight int, c greeterpb.GreeterClient, req *greeterpb.HelloRequest) {
	ctx := context.Background()
	runParallel(b, inflight, func() error {
		_, err := c.SayHello(ctx, req)
		return err
	})
}

// BenchmarkHTTPParallel is BenchmarkHTTP with 8 and then 64 requests in
// flight. Both clients are HTTP/1.1 keeping up to 64 idle connections per
// host, so each request in flight keeps its own connection.
func BenchmarkHTTPParallel(b *testing.B) {
	for _, n := range inflightLevels {
		b.Run(fmt.Sprintf("inflight-%d", n), func(b *testing.B) {
			b.Run("plain-https-mtls", func(b *testing.B) {
				c, url := plainMTLSHTTPClient(b)
				runHTTPParallel(b, n, c, url)
			})
			b.Run("meshlet", func(b *testing.B) {
				c, url := meshletHTTPClient(b)
				runHTTPParallel(b, n, c, url)
			})
		})
	}
}

func runHTTPParallel(b *testing.B, inflight int, c *http.Client, url string) {
	runParallel(b, inflight, func() error { return httpGet(c, url) })
}

// runParallel times call with inflight calls at a time: RunParallel runs
// parallelism × GOMAXPROCS goroutines, each making one call after another.
func runParallel(b *testing.B, inflight int, call func() error) {
	warmUp(b, inflight, call)
	procs := runtime.GOMAXPROCS(0)
	p := (inflight + procs - 1) / procs
	if p*procs != inflight {
		b.Logf("GOMAXPROCS=%d: %d calls in flight, not %d", procs, p*procs, inflight)
	}
	b.SetParallelism(p)
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(); err != nil {
				b.Error(err) // Fatal must not be called from these goroutines
				return
			}
		}
	})
}

// warmUp makes a few calls from inflight goroutines at once before the
// clock starts, so that an HTTP client has opened (and handshaken) about
// as many connections as the timed calls will use: 2,000 calls would
// otherwise pay 64 handshakes.
func warmUp(b *testing.B, inflight int, call func() error) {
	var (
		wg   sync.WaitGroup
		once sync.Once
		err  error
	)
	for range inflight {
		wg.Go(func() {
			for range 5 {
				if e := call(); e != nil {
					once.Do(func() { err = e })
					return
				}
			}
		})
	}
	wg.Wait()
	if err != nil {
		b.Fatal(err)
	}
}
