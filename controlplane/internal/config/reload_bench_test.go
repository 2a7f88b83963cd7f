package config_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// serviceDocs is the file of service k as bench/scale writes it: a
// ServiceEntry, a DestinationRule and n WorkloadEntries, whose addresses
// are addrs (of length n).
func serviceDocs(k int, addrs []string) []string {
	svc := fmt.Sprintf("bench-%d", k)
	host := svc + ".default.svc.cluster.local"
	docs := []string{fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %[1]s
  namespace: default
spec:
  hosts:
  - %[2]s
  location: MESH_INTERNAL
  ports:
  - number: 9080
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: %[1]s
`, svc, host), fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: %[1]s
  namespace: default
spec:
  host: %[2]s
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
`, svc, host)}
	for j, a := range addrs {
		docs = append(docs, serviceWorkloadEntry(svc, j, a))
	}
	return docs
}

func serviceWorkloadEntry(svc string, j int, addr string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %[1]s-%[2]d
  namespace: default
spec:
  address: %[3]s
  ports:
    grpc: 9080
  labels:
    app: %[1]s
  serviceAccount: %[1]s
`, svc, j, addr)
}

// BenchmarkReloadServiceChurn is bench/scale's file churn as the control
// plane's Loader sees it: 10 service files, each a ServiceEntry, a
// DestinationRule and 100 WorkloadEntries (1,020 documents), all
// rewritten with 10 WorkloadEntries of each moved to a new address. An
// op is the Load after the rewrite; writing the files is not timed.
//
//	go test ./controlplane/internal/config -run '^$' -bench ReloadServiceChurn -count 6
func BenchmarkReloadServiceChurn(b *testing.B) {
	const services, perService, moved = 10, 100, 10
	dir := b.TempDir()
	addrs := make([][]string, services)
	next := 0
	newAddr := func() string {
		next++
		return fmt.Sprintf("10.%d.%d.%d", 1+next>>16, (next>>8)&0xff, next&0xff)
	}
	writeAll := func() {
		for k := range services {
			write(b, dir, fmt.Sprintf("bench-%d.yaml", k), strings.Join(serviceDocs(k, addrs[k]), "---\n"))
		}
	}
	for k := range addrs {
		for range perService {
			addrs[k] = append(addrs[k], newAddr())
		}
	}
	writeAll()
	l := config.NewLoader()
	if _, err := l.Load(dir); err != nil {
		b.Fatal(err)
	}
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		for k := range addrs {
			for m := range moved {
				addrs[k][(round*moved+m)%perService] = newAddr()
			}
		}
		round++
		writeAll()
		b.StartTimer()
		cfg, err := l.Load(dir)
		if err != nil {
			b.Fatal(err)
		}
		if got := len(cfg.WorkloadEntries); got != services*perService {
			b.Fatalf("%d WorkloadEntries, want %d", got, services*perService)
		}
	}
	b.ReportMetric(float64(l.Parsed()), "docs/op")
}
