//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/meshlet/meshlet/internal/wire"
)

// The services of the benchmark: bench-0 .. bench-(S-1) in namespace
// benchNamespace, each a ServiceEntry with one port, benchServicePort.
const (
	benchNamespace   = "default"
	benchServicePort = 9080
)

// serviceName is the name of service k, which is also the service account
// its instances register with.
func serviceName(k int) string { return fmt.Sprintf("bench-%d", k) }

func serviceHost(k int) string { return wire.ServiceHost(serviceName(k), benchNamespace) }

// clusterName is the cluster of service k, as the control plane names it.
func clusterName(k int) string { return wire.ClusterName(benchServicePort, "", serviceHost(k)) }

// endpoint is one address of a service.
type endpoint struct {
	ip   string
	port int
}

// String is the address as resolver.Endpoint.Address has it.
func (e endpoint) String() string { return net.JoinHostPort(e.ip, strconv.Itoa(e.port)) }

// topology is what the control plane should serve: each service's
// WorkloadEntries (from the files) and registered instances. Every
// address it hands out is new: a swapped endpoint never comes back.
type topology struct {
	wes      [][]endpoint // by service, then by WorkloadEntry (bench-k-j)
	regs     [][]endpoint // by service
	nextFile int
	nextReg  int
}

// newTopology spreads n WorkloadEntries over services round robin.
func newTopology(n, services int) *topology {
	t := &topology{wes: make([][]endpoint, services), regs: make([][]endpoint, services)}
	for i := range n {
		t.wes[i%services] = append(t.wes[i%services], t.fileEndpoint())
	}
	return t
}

// fileEndpoint is a new WorkloadEntry address in 10/8. Nothing dials it.
func (t *topology) fileEndpoint() endpoint {
	i := t.nextFile
	t.nextFile++
	return endpoint{ip: fmt.Sprintf("10.%d.%d.%d", 1+i>>16, (i>>8)&0xff, i&0xff), port: benchServicePort}
}

// regEndpoint is a new registration address in 127.1/16 upward: the
// control plane takes a loopback address from a loopback connection as
// the server's own.
func (t *topology) regEndpoint() endpoint {
	i := t.nextReg
	t.nextReg++
	return endpoint{ip: fmt.Sprintf("127.%d.%d.%d", 1+i>>16, (i>>8)&0xff, i&0xff), port: 10000 + i%50000}
}

// want returns each service's endpoint set as the clients should hold it.
func (t *topology) want() []fingerprint {
	out := make([]fingerprint, len(t.wes))
	for k := range out {
		for _, e := range t.wes[k] {
			out[k].add(e.String())
		}
		for _, e := range t.regs[k] {
			out[k].add(e.String())
		}
	}
	return out
}

// serviceFile is the config file of service k.
func serviceFile(dir string, k int) string {
	return filepath.Join(dir, serviceName(k)+".yaml")
}

// writeService writes service k's file: its ServiceEntry, which selects
// app=bench-k, a DestinationRule with ISTIO_MUTUAL (the WorkloadEntries
// and the registered meshlet servers share the cluster, and without it
// the control plane warns at every build that it chose mTLS for both),
// and its WorkloadEntries. It writes a temporary file and
// renames it, as editors and ConfigMaps do, so that the control plane
// never reads half a file (the watcher ignores the .tmp name).
func (t *topology) writeService(dir string, k int) error {
	var b strings.Builder
	svc := serviceName(k)
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  hosts:
  - %[3]s
  location: MESH_INTERNAL
  ports:
  - number: %[4]d
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: %[1]s
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: %[1]s
  namespace: %[2]s
spec:
  host: %[3]s
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
`, svc, benchNamespace, serviceHost(k), benchServicePort)
	for j, e := range t.wes[k] {
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %[1]s-%[2]d
  namespace: %[3]s
spec:
  address: %[4]s
  ports:
    grpc: %[5]d
  labels:
    app: %[1]s
  serviceAccount: %[1]s
`, svc, j, benchNamespace, e.ip, e.port)
	}
	path := serviceFile(dir, k)
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(b.String()), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
