package balancer_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshlet/meshlet/balancer"
)

// BenchmarkPickDone measures one Pick and its Done per policy, with and
// without outlier detection, on one goroutine and on all of them.
func BenchmarkPickDone(b *testing.B) {
	for _, policy := range policies {
		for _, n := range []int{10, 100} {
			for _, outlier := range []bool{false, true} {
				cfg := balancer.Config{Policy: policy}
				name := fmt.Sprintf("%v/%d", policy, n)
				if outlier {
					cfg.Outlier = &balancer.OutlierConfig{}
					name += "/outlier"
				}
				bal := newBalancer(b, cfg, endpoints(n))
				info := balancer.DoneInfo{Latency: time.Millisecond}
				b.Run(name, func(b *testing.B) {
					b.ReportAllocs()
					var i uint64
					for b.Loop() {
						i++
						r, err := bal.Pick(balancer.Request{Hash: i * 0x9e3779b97f4a7c15, HasHash: true})
						if err != nil {
							b.Fatal(err)
						}
						r.Done(info)
					}
				})
				b.Run(name+"/parallel", func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						var i uint64
						for pb.Next() {
							i++
							r, err := bal.Pick(balancer.Request{Hash: i * 0x9e3779b97f4a7c15, HasHash: true})
							if err != nil {
								b.Fatal(err)
							}
							r.Done(info)
						}
					})
				})
			}
		}
	}
}

// BenchmarkUpdate measures replacing a set of 100 endpoints (one changed).
func BenchmarkUpdate(b *testing.B) {
	for _, policy := range []balancer.PolicyKind{balancer.RoundRobin, balancer.RingHash} {
		b.Run(policy.String(), func(b *testing.B) {
			bal := newBalancer(b, balancer.Config{Policy: policy}, endpoints(100))
			sets := [2][]balancer.Endpoint{endpoints(100), endpoints(100)}
			sets[1][7].Address = "10.0.1.7:8080"
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				if err := bal.Update(sets[i%2]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
