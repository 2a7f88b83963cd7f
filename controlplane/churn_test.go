package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

const churnServices = 4

func churnHost(k int) string    { return fmt.Sprintf("churn-%d.default.svc.cluster.local", k) }
func churnCluster(k int) string { return wire.ClusterName(9080, "", churnHost(k)) }

// churnFile is service k's config: a ServiceEntry selecting app=churn-k
// and a WorkloadEntry for each address of wles.
func churnFile(k int, wles []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: churn-%[1]d
spec:
  hosts:
  - churn-%[1]d
  ports:
  - number: 9080
    name: grpc
    protocol: GRPC
  resolution: STATIC
  workloadSelector:
    labels:
      app: churn-%[1]d
`, k)
	for i, a := range wles {
		fmt.Fprintf(&b, `---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: churn-%d-%d
spec:
  address: %s
  ports:
    grpc: 9080
  labels:
    app: churn-%d
`, k, i, a, k)
	}
	return b.String()
}

// churnClient is a meshlet xDS client watching every service's endpoints.
type churnClient struct {
	mu   sync.Mutex
	have map[string][]string // cluster -> sorted "ip:port"
	err  error               // the first update it rejected
}

func (c *churnClient) set(cluster string, e resolver.Endpoints, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case errors.Is(err, resolver.ErrResourceNotFound):
		c.have[cluster] = nil
	case err != nil:
		if c.err == nil {
			c.err = fmt.Errorf("%s: %w", cluster, err)
		}
	default:
		var addrs []string
		for _, l := range e.Localities {
			for _, ep := range l.Endpoints {
				addrs = append(addrs, ep.Address)
			}
		}
		slices.Sort(addrs)
		c.have[cluster] = addrs
	}
}

// registered is one open registration stream.
type registered struct {
	k      int
	addr   string
	stream registrypb.Registry_RegisterClient
	cancel context.CancelFunc
}

// After 1,000 random registrations and deregistrations interleaved with
// config edits, every connected client holds exactly the endpoints
// that the control plane's registry and config make, and rejected none of
// the updates on the way.
func TestClientsConvergeAfterChurn(t *testing.T) {
	rng := rand.New(rand.NewPCG(12, 0))
	wles := make([][]string, churnServices)
	files := map[string]string{}
	next := 0
	newWLE := func() string { next++; return fmt.Sprintf("10.9.%d.%d:9080", next/250, next%250+1) }
	for k := range churnServices {
		for range 3 {
			wles[k] = append(wles[k], newWLE())
		}
		files[fmt.Sprintf("churn-%d.yaml", k)] = churnFile(k, hosts(wles[k]))
	}
	dir := meshtest.WriteConfig(t, files)
	cp := meshtest.StartControlPlane(t, dir)

	const nClients = 4
	clients := make([]*churnClient, nClients)
	for i := range clients {
		c := &churnClient{have: map[string][]string{}}
		clients[i] = c
		rc, err := resolver.New(t.Context(), resolver.WithServers(cp.XDSAddr()),
			resolver.WithDialOptions(grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", "churn-client"))),
			resolver.WithNode(resolver.Node{Namespace: "default", ServiceAccount: "churn-client", WorkloadName: fmt.Sprintf("churn-client-%d", i)}),
			resolver.WithLogger(meshtest.Logger()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { rc.Close() })
		for k := range churnServices {
			cl := churnCluster(k)
			stop := rc.WatchEndpoints(cl, func(e resolver.Endpoints, err error) { c.set(cl, e, err) })
			t.Cleanup(stop)
		}
	}

	conns := make([]*grpc.ClientConn, churnServices)
	for k := range conns {
		conns[k] = dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", fmt.Sprintf("churn-%d", k)))
	}
	var live []*registered
	t.Cleanup(func() {
		for _, r := range live {
			r.cancel()
		}
	})
	port := 30000
	register := func(k int) {
		port++
		ctx, cancel := context.WithCancel(context.Background())
		stream, err := registrypb.NewRegistryClient(conns[k]).Register(ctx)
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		inst := &registrypb.Instance{Id: fmt.Sprintf("churn-%d-%d", k, port), Service: fmt.Sprintf("churn-%d", k), Namespace: "default",
			Address: "127.0.0.1", Port: uint32(port), Protocol: "GRPC", Labels: map[string]string{"app": fmt.Sprintf("churn-%d", k)}}
		for _, req := range []*registrypb.RegisterRequest{{Instance: inst, State: registrypb.State_NOT_SERVING}, {State: registrypb.State_SERVING}} {
			if err := stream.Send(req); err != nil {
				cancel()
				t.Fatal(err)
			}
			if _, err := stream.Recv(); err != nil {
				cancel()
				t.Fatalf("register %s: %v", inst.GetId(), err)
			}
		}
		live = append(live, &registered{k: k, addr: fmt.Sprintf("127.0.0.1:%d", port), stream: stream, cancel: cancel})
	}
	deregister := func(i int) {
		r := live[i]
		live = slices.Delete(live, i, i+1)
		defer r.cancel()
		if err := r.stream.CloseSend(); err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := r.stream.Recv(); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("deregister %s: %v", r.addr, err)
				}
				return
			}
		}
	}

	// The bar: 1,000 registrations and deregistrations, with
	// config edits among them (one in 20 operations).
	const registryOps = 1000
	edits, ops := 0, 0
	for n := 0; n < registryOps; ops++ {
		switch x := rng.IntN(20); {
		case x == 0: // a config edit: one service's WorkloadEntries change
			k := rng.IntN(churnServices)
			if len(wles[k]) > 0 && rng.IntN(2) == 0 {
				wles[k] = slices.Delete(wles[k], 0, 1)
			}
			wles[k] = append(wles[k], newWLE())
			meshtest.WriteFile(t, dir, fmt.Sprintf("churn-%d.yaml", k), churnFile(k, hosts(wles[k])))
			edits++
		case x < 12 || len(live) == 0:
			register(rng.IntN(churnServices))
			n++
		default:
			deregister(rng.IntN(len(live)))
			n++
		}
	}
	if edits == 0 {
		t.Fatal("the churn made no config edit; change the seed")
	}

	want := map[string][]string{}
	for k := range churnServices {
		addrs := slices.Clone(wles[k])
		for _, r := range live {
			if r.k == k {
				addrs = append(addrs, r.addr)
			}
		}
		slices.Sort(addrs)
		want[churnCluster(k)] = addrs
	}
	var diff string
	meshtest.WaitUntil(t, 30*time.Second, "every client holds the control plane's endpoints", func() bool {
		diff = ""
		for i, c := range clients {
			c.mu.Lock()
			for cl, w := range want {
				if !slices.Equal(c.have[cl], w) {
					diff = fmt.Sprintf("client %d, %s: has %v, want %v", i, cl, c.have[cl], w)
				}
			}
			c.mu.Unlock()
		}
		return diff == ""
	})
	for i, c := range clients {
		c.mu.Lock()
		if c.err != nil {
			t.Errorf("client %d rejected an update: %v", i, c.err)
		}
		c.mu.Unlock()
	}
	// And what the clients hold is what the control plane serves.
	if n := len(dump(t, cp).Instances); n != len(live) {
		t.Errorf("the control plane's registry holds %d instances, want %d", n, len(live))
	}
	t.Logf("%d operations (%d config edits), %d registrations live", ops, edits, len(live))
}

// hosts strips the ports of "ip:port" addresses.
func hosts(addrs []string) []string {
	out := make([]string, len(addrs))
	for i, a := range addrs {
		out[i], _, _ = strings.Cut(a, ":")
	}
	return out
}
