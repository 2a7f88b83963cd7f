package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// BenchmarkUnknownListener measures how long a watch of a Listener that
// the control plane does not have takes to get ErrResourceNotFound, with
// meshlet's control plane on loopback (an unknown host, as the mesh's
// HTTP client and gRPC dials ask it):
//
//   - alone: the name is watched with nothing in flight; the answer to
//     that request says so, one round trip later.
//   - after-known: a known Listener and the unknown one are watched back
//     to back, as a process that calls two new hosts at once does. When
//     the answer about the first is on its way as the second is watched,
//     the second is only suspected, and is confirmed after
//     xdsclient.DefaultAbsentConfirmDelay (300ms), since this control
//     plane does not answer the ACK that names it.
//
// ns/op is the time to ErrResourceNotFound; confirmed/op is the share of
// unknown names that waited for the confirmation.
func BenchmarkUnknownListener(b *testing.B) {
	for _, afterKnown := range []bool{false, true} {
		name := "alone"
		if afterKnown {
			name = "after-known"
		}
		b.Run(name, func(b *testing.B) {
			// One known host per op, so that every op subscribes a name
			// afresh.
			hosts := make([]string, b.N)
			for i := range hosts {
				hosts[i] = fmt.Sprintf("  - known%d", i)
			}
			dir := meshtest.WriteConfig(b, map[string]string{"known.yaml": `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: known
spec:
  hosts:
` + strings.Join(hosts, "\n") + `
  location: MESH_INTERNAL
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
`})
			cp := meshtest.StartControlPlane(b, dir)
			ctx, cancel := context.WithTimeout(b.Context(), 10*time.Second)
			defer cancel()
			c, err := resolver.New(ctx, resolver.WithServers(cp.XDSAddr()),
				resolver.WithNode(resolver.Node{Namespace: "default", ServiceAccount: "bench", WorkloadName: "bench"}),
				resolver.WithDialOptions(grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(b, cp, "default", "bench"))),
				resolver.WithLogger(meshtest.Logger()))
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()

			// A first Listener, so that the stream has its first answer.
			first := make(chan error, 1)
			defer c.WatchListener("known0.default.svc.cluster.local:80", func(_ resolver.Listener, err error) {
				select {
				case first <- err:
				default:
				}
			})()
			if err := <-first; err != nil {
				b.Fatalf("known0: %v", err)
			}

			var cancels []func()
			defer func() {
				for _, c := range cancels {
					c()
				}
			}()
			confirmed := 0
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				if afterKnown && i > 0 {
					cancels = append(cancels, c.WatchListener(fmt.Sprintf("known%d.default.svc.cluster.local:80", i), func(resolver.Listener, error) {}))
				}
				got := make(chan error, 1)
				cancels = append(cancels, c.WatchListener(fmt.Sprintf("unknown%d.default.svc.cluster.local:80", i), func(_ resolver.Listener, err error) {
					select {
					case got <- err:
					default:
					}
				}))
				select {
				case err := <-got:
					if !errors.Is(err, resolver.ErrResourceNotFound) {
						b.Fatalf("unknown%d: %v, want ErrResourceNotFound", i, err)
					}
				case <-time.After(10 * time.Second):
					b.Fatalf("unknown%d: no answer", i)
				}
				if time.Since(start) >= 250*time.Millisecond {
					confirmed++
				}
			}
			b.ReportMetric(float64(confirmed)/float64(b.N), "confirmed/op")
		})
	}
}
