package resolver_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

const (
	reviewsTarget = "reviews.default.svc.cluster.local:9080"
	reviewsHost   = "reviews.default.svc.cluster.local"
)

func clusterName(subset string) string { return "outbound|9080|" + subset + "|" + reviewsHost }

// reviewsConfig is the reviews service of Istio's Bookinfo, with endpoints
// from WorkloadEntries (no servers needed): v1 and v3 in eu-west/zone-a,
// v2 in eu-west/zone-b/rack-1 with weight 2. Each subset has its own load
// balancer, and mTLS is on except for v3.
const reviewsConfig = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  location: MESH_INTERNAL
  ports:
  - number: 9080
    name: http
    protocol: HTTP
  resolution: STATIC
  workloadSelector:
    labels:
      app: reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v1
spec:
  address: 10.0.1.1
  ports:
    http: 9080
  labels:
    app: reviews
    version: v1
  locality: eu-west/zone-a
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v2
spec:
  address: 10.0.1.2
  ports:
    http: 9080
  labels:
    app: reviews
    version: v2
  locality: eu-west/zone-b/rack-1
  weight: 2
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: reviews-v3
spec:
  address: 10.0.1.3
  ports:
    http: 9080
  labels:
    app: reviews
    version: v3
  locality: eu-west/zone-a
  serviceAccount: bookinfo-reviews
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: v1
    labels:
      version: v1
    trafficPolicy:
      loadBalancer:
        simple: RANDOM
  - name: v2
    labels:
      version: v2
    trafficPolicy:
      loadBalancer:
        consistentHash:
          httpHeaderName: x-user
          ringHash:
            minimumRingSize: 2048
  - name: v3
    labels:
      version: v3
    trafficPolicy:
      loadBalancer:
        simple: LEAST_REQUEST
      tls:
        mode: DISABLE
`

// reviewsRoute sends jason to v3 and splits the rest 80/20 between v1
// and v2, with a timeout and retries.
const reviewsRoute = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - name: jason
    match:
    - name: end-user
      headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v3
  - name: canary
    route:
    - destination:
        host: reviews
        subset: v1
      weight: 80
    - destination:
        host: reviews
        subset: v2
      weight: 20
    timeout: 3s
    retries:
      attempts: 3
      perTryTimeout: 1s
      retryOn: 5xx,connect-failure,503
`

func writeReviews(t *testing.T) string {
	t.Helper()
	return meshtest.WriteConfig(t, map[string]string{"reviews.yaml": reviewsConfig, "route.yaml": reviewsRoute})
}

// newClient starts a client against addrs with a test node and fast
// backoff, closed when the test ends.
func newClient(t *testing.T, nodeID string, addrs []string, opts ...resolver.Option) *resolver.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	all := []resolver.Option{
		resolver.WithServers(addrs...),
		resolver.WithNode(resolver.Node{ID: nodeID, Cluster: "productpage.default", Namespace: "default", ServiceAccount: "bookinfo-productpage", WorkloadName: "productpage", Labels: map[string]string{"app": "productpage"}}),
		resolver.WithLogger(meshtest.Logger()),
		resolver.WithBackoff(20*time.Millisecond, 200*time.Millisecond),
	}
	c, err := resolver.New(ctx, append(all, opts...)...)
	if err != nil {
		t.Fatalf("resolver.New: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// trusted gives a client the mTLS credentials of the test node's identity
// (ns/default/sa/bookinfo-productpage) from cp's CA.
func trusted(t *testing.T, cp *controlplane.Server) resolver.Option {
	t.Helper()
	return resolver.WithDialOptions(grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", "bookinfo-productpage")))
}

// register keeps inst registered with cp, with creds, until the test ends.
func register(t *testing.T, cp *controlplane.Server, creds credentials.TransportCredentials, inst *registrypb.Instance) {
	t.Helper()
	cc, err := grpc.NewClient(cp.XDSAddr(), grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	stream, err := registrypb.NewRegistryClient(cc).Register(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&registrypb.RegisterRequest{Instance: inst, State: registrypb.State_SERVING}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("register %s: %v", inst.GetId(), err)
	}
}

// update is one call of a watcher.
type update[T any] struct {
	v   T
	err error
}

// watcher records the calls of one watch.
type watcher[T any] struct {
	ch     chan update[T]
	cancel func()
}

func watch[T any](t *testing.T, start func(string, func(T, error)) func(), name string) *watcher[T] {
	t.Helper()
	w := &watcher[T]{ch: make(chan update[T], 1000)}
	w.cancel = start(name, func(v T, err error) {
		select {
		case w.ch <- update[T]{v, err}:
		default:
			t.Errorf("watcher of %s: too many updates", name)
		}
	})
	t.Cleanup(w.cancel)
	return w
}

// next waits for the next call.
func (w *watcher[T]) next(t *testing.T, timeout time.Duration) update[T] {
	t.Helper()
	select {
	case u := <-w.ch:
		return u
	case <-time.After(timeout):
		t.Fatalf("no update within %v", timeout)
		return update[T]{}
	}
}

// value waits for the next good value.
func (w *watcher[T]) value(t *testing.T, timeout time.Duration) T {
	t.Helper()
	u := w.next(t, timeout)
	if u.err != nil {
		t.Fatalf("watcher got error %v, want a value", u.err)
	}
	return u.v
}

// until waits for a call that cond accepts, skipping others.
func (w *watcher[T]) until(t *testing.T, timeout time.Duration, what string, cond func(T, error) bool) update[T] {
	t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case u := <-w.ch:
			if cond(u.v, u.err) {
				return u
			}
		case <-deadline:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
			return update[T]{}
		}
	}
}

// quiet checks that no call comes within d.
func (w *watcher[T]) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case u := <-w.ch:
		t.Fatalf("unexpected update: %+v, %v", u.v, u.err)
	case <-time.After(d):
	}
}

// clientStatus is one stream of the control plane's /debug/clients.
type clientStatus struct {
	NodeID   string                 `json:"nodeID"`
	Metadata map[string]any         `json:"metadata"`
	Types    map[string]*typeStatus `json:"types"`
}

type typeStatus struct {
	Requested  []string `json:"requested"`
	Sent       string   `json:"sentVersion"`
	Acked      string   `json:"ackedVersion"`
	Nacked     string   `json:"nackedVersion"`
	NackDetail string   `json:"nackDetail"`
}

func debugClients(t *testing.T, cp *controlplane.Server) []clientStatus {
	t.Helper()
	resp, err := http.Get("http://" + cp.AdminAddr() + "/debug/clients")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out []clientStatus
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatal(err)
	}
	return out
}

// waitClient waits until the control plane lists nodeID and cond accepts
// its status.
func waitClient(t *testing.T, cp *controlplane.Server, nodeID, what string, cond func(clientStatus) bool) clientStatus {
	t.Helper()
	var last []clientStatus
	var found *clientStatus
	defer func() {
		if found == nil {
			b, _ := json.MarshalIndent(last, "", "  ")
			t.Logf("/debug/clients:\n%s", b)
		}
	}()
	meshtest.WaitUntil(t, 5*time.Second, what+" for "+nodeID+" on /debug/clients", func() bool {
		last = debugClients(t, cp)
		for i, c := range last {
			if c.NodeID == nodeID && cond(c) {
				found = &last[i]
				return true
			}
		}
		return false
	})
	return *found
}

func isNotFound(err error) bool { return errors.Is(err, resolver.ErrResourceNotFound) }

func nodeID(t *testing.T) string {
	return "test~" + strings.ReplaceAll(t.Name(), "/", "-")
}
