package controlplane_test

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	grpcstatus "google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/meshtest"
)

// The attacks of the "trusted control plane" issue, each against a real
// control plane over loopback with raw clients: what a workload that is
// not meshlet's library (or is an attacker) can send.

func dialCP(t *testing.T, addr string, creds credentials.TransportCredentials) *grpc.ClientConn {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// tryRegister opens a registration stream with inst and returns the
// control plane's answer: nil when it registered. The stream stays open
// until the test ends.
func tryRegister(t *testing.T, cc *grpc.ClientConn, inst *registrypb.Instance) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := registrypb.NewRegistryClient(cc).Register(ctx)
	if err != nil {
		return err
	}
	// A stream the server ended already fails Send with io.EOF; its status
	// comes from Recv.
	if err := stream.Send(&registrypb.RegisterRequest{Instance: inst, State: registrypb.State_SERVING}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_, err = stream.Recv()
	return err
}

func wantCode(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	if grpcstatus.Code(err) != code {
		t.Fatalf("error %v, want code %v", err, code)
	}
	for _, c := range contains {
		if !strings.Contains(err.Error(), c) {
			t.Errorf("error %q does not say %q", err, c)
		}
	}
}

func reviewsInstance(id, addr string, port uint32) *registrypb.Instance {
	return &registrypb.Instance{Id: id, Service: "reviews", Namespace: "default", Address: addr, Port: port, Protocol: "GRPC",
		Labels: map[string]string{"version": "v1"}}
}

func registryEntries(t *testing.T, cp *controlplane.Server) []controlplane.Instance {
	t.Helper()
	return dump(t, cp).Instances
}

func TestRegistrationNeedsAProvenIdentity(t *testing.T) {
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig}))

	// No certificate at all: a plaintext stream does not even reach TLS,
	// and a TLS stream without a client certificate is refused.
	plain := dialCP(t, cp.XDSAddr(), insecure.NewCredentials())
	if err := tryRegister(t, plain, reviewsInstance("raw", "169.254.169.254", 80)); err == nil {
		t.Fatal("a plaintext registration was accepted")
	}
	anon := dialCP(t, cp.XDSAddr(), credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}))
	wantCode(t, tryRegister(t, anon, reviewsInstance("raw", "169.254.169.254", 80)), codes.Unauthenticated, "needs mTLS")

	// A workload of another service account: refused, naming both.
	attacker := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "attacker"))
	wantCode(t, tryRegister(t, attacker, reviewsInstance("evil", "127.0.0.1", 9999)), codes.PermissionDenied,
		"spiffe://cluster.local/ns/default/sa/attacker may not serve reviews.default.svc.cluster.local", "WorkloadGroup")
	// Claiming the service account or namespace in the request changes
	// nothing: the certificate decides.
	claim := reviewsInstance("evil", "127.0.0.1", 9999)
	claim.ServiceAccount = "reviews"
	wantCode(t, tryRegister(t, attacker, claim), codes.PermissionDenied, `service account "reviews" is claimed`, "sa/attacker")
	other := reviewsInstance("evil", "127.0.0.1", 9999)
	other.Namespace = "prod"
	wantCode(t, tryRegister(t, attacker, other), codes.PermissionDenied, `namespace "prod" is claimed`)

	// The service's own account registers, but not somewhere else's
	// address.
	reviews := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	wantCode(t, tryRegister(t, reviews, reviewsInstance("far", "169.254.169.254", 80)), codes.PermissionDenied,
		"169.254.169.254 is not the address its connection comes from")
	if err := tryRegister(t, reviews, reviewsInstance("r1", "127.0.0.1", 9080)); err != nil {
		t.Fatalf("the service's own account: %v", err)
	}

	// Another identity cannot take over a live instance's ID.
	takeover := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "takeover"))
	wantCode(t, tryRegister(t, takeover, &registrypb.Instance{Id: "r1", Service: "takeover", Namespace: "default", Address: "127.0.0.1", Port: 9090}),
		codes.PermissionDenied, "registered by another identity", "spiffe://cluster.local/ns/default/sa/reviews")

	entries := registryEntries(t, cp)
	if len(entries) != 1 || entries[0].ID != "r1" || entries[0].Identity != "spiffe://cluster.local/ns/default/sa/reviews" {
		t.Fatalf("registry %+v, want only r1 of sa/reviews", entries)
	}
}

func TestWorkloadGroupBindsAServiceAccountAndItsLabels(t *testing.T) {
	group := `apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: reviews-v2
spec:
  metadata:
    labels:
      app: reviews
  template:
    serviceAccount: bookinfo-reviews
    labels:
      app: reviews
      version: v2
`
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "group.yaml": group}))
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "bookinfo-reviews"))
	inst := reviewsInstance("g1", "127.0.0.1", 9080)
	inst.Labels = map[string]string{"app": "legacy", "version": "v1", "team": "books"}
	if err := tryRegister(t, cc, inst); err != nil {
		t.Fatalf("a service account the group binds: %v", err)
	}
	entries := registryEntries(t, cp)
	if len(entries) != 1 {
		t.Fatalf("registry %+v", entries)
	}
	got := entries[0].Labels
	// app and the template's labels are the operator's; others stay.
	if got["app"] != "reviews" || got["version"] != "v2" || got["team"] != "books" {
		t.Errorf("labels %v, want app=reviews and version=v2 imposed, team kept", got)
	}
	if entries[0].ServiceAccount != "bookinfo-reviews" {
		t.Errorf("service account %q", entries[0].ServiceAccount)
	}
}

func TestRegistrationLimits(t *testing.T) {
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig}),
		controlplane.WithLimits(controlplane.Limits{RegistrationsPerIdentity: 2}))
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))

	// A weight that would overflow a locality's sum.
	heavy := reviewsInstance("heavy", "127.0.0.1", 9080)
	heavy.Weight = 0xFFFFFFFF
	wantCode(t, tryRegister(t, cc, heavy), codes.InvalidArgument, "weight 4294967295 is over the maximum, 65536")

	for i := range 2 {
		if err := tryRegister(t, cc, reviewsInstance(fmt.Sprint("r", i), "127.0.0.1", uint32(9080+i))); err != nil {
			t.Fatal(err)
		}
	}
	wantCode(t, tryRegister(t, cc, reviewsInstance("r3", "127.0.0.1", 9083)), codes.ResourceExhausted, "too many registrations for one identity (2)")
}

// adsStream opens an ADS stream on cc.
func adsStream(t *testing.T, cc *grpc.ClientConn) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return ads
}

func node(id, ns, sa string, labels map[string]any) *core.Node {
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": ns, "SERVICE_ACCOUNT": sa, "LABELS": labels})
	return &core.Node{Id: id, Metadata: md}
}

// askListeners sends a Listener request and returns the names in the
// first response.
func askListeners(t *testing.T, ads discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient, n *core.Node, names ...string) ([]string, error) {
	t.Helper()
	if err := ads.Send(&discovery.DiscoveryRequest{Node: n, TypeUrl: resource.ListenerType, ResourceNames: names}); err != nil {
		return nil, err
	}
	resp, err := ads.Recv()
	if err != nil {
		return nil, err
	}
	var got []string
	for _, r := range resp.GetResources() {
		var l listenerv3.Listener
		if err := r.UnmarshalTo(&l); err != nil {
			t.Fatal(err)
		}
		got = append(got, l.GetName())
	}
	return got, nil
}

func TestServerListenersOnlyForTheirOwner(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	reviewsCreds := meshtest.ControlPlaneCredentials(t, cp, "default", "reviews")
	reviews := dialCP(t, cp.XDSAddr(), reviewsCreds)
	if err := tryRegister(t, reviews, reviewsInstance("r1", "127.0.0.1", 9080)); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf(wire.ServerListenerTemplate, "127.0.0.1:9080")

	// Another identity asks first for reviews' address, claiming its
	// labels: it is told the name does not exist.
	other := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "not-reviews"))
	got, err := askListeners(t, adsStream(t, other), node("thief", "default", "not-reviews", map[string]any{"app": "reviews"}), name)
	if err != nil || len(got) != 0 {
		t.Fatalf("another identity got %v (%v), want nothing", got, err)
	}
	// Node metadata that claims another identity is refused.
	_, err = askListeners(t, adsStream(t, other), node("liar", "default", "reviews", nil), name)
	wantCode(t, err, codes.PermissionDenied, `claims namespace "default" and service account "reviews"`, "its certificate is spiffe://cluster.local/ns/default/sa/not-reviews")

	// The owner gets it, built for its registered labels.
	got, err = askListeners(t, adsStream(t, reviews), node("reviews-1", "default", "reviews", nil), name)
	if err != nil || len(got) != 1 || got[0] != name {
		t.Fatalf("the owner got %v (%v), want %s", got, err, name)
	}
}

// A malformed server Listener name is refused on its own: valid reloads
// and new servers still go through.
func TestMalformedInboundNameStopsNothing(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	bad := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "garbage"))
	badStream := adsStream(t, bad)
	got, err := askListeners(t, badStream, node("garbage", "default", "garbage", nil),
		strings.TrimSuffix(wire.ServerListenerTemplate, "%s")+"garbage", strings.TrimSuffix(wire.ServerListenerTemplate, "%s")+"1.2.3.4:0")
	if err != nil || len(got) != 0 {
		t.Fatalf("malformed names: %v (%v), want an empty answer", got, err)
	}

	// A valid reload is served while that stream is open.
	meshtest.WriteFile(t, dir, "route.yaml", strings.NewReplacer("weight: 80", "weight: 70", "weight: 20", "weight: 30").Replace(goodRoute))
	meshtest.WaitUntil(t, 5*time.Second, "the reload", func() bool {
		for _, r := range dump(t, cp).Resources {
			if r.Kind == "VirtualService" && strings.Contains(string(r.Spec), "70") {
				return true
			}
		}
		return false
	})
	if d := dump(t, cp); d.LastError != nil {
		t.Fatalf("reload refused: %s", d.LastError.Message)
	}
	// And a new server gets its Listener.
	reviews := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	if err := tryRegister(t, reviews, reviewsInstance("r1", "127.0.0.1", 9080)); err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf(wire.ServerListenerTemplate, "127.0.0.1:9080")
	got, err = askListeners(t, adsStream(t, reviews), node("reviews-1", "default", "reviews", nil), name)
	if err != nil || len(got) != 1 {
		t.Fatalf("a new server's Listener: %v (%v)", got, err)
	}
}

func TestXDSLimits(t *testing.T) {
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig}),
		controlplane.WithLimits(controlplane.Limits{NamesPerRequest: 10, InboundPerStream: 2}))
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "greedy"))
	var many []string
	for i := range 11 {
		many = append(many, fmt.Sprintf("host-%d:80", i))
	}
	_, err := askListeners(t, adsStream(t, cc), node("greedy", "default", "greedy", nil), many...)
	wantCode(t, err, codes.ResourceExhausted, "11 resource names is over the limit, 10")

	var inbound []string
	for i := range 3 {
		inbound = append(inbound, fmt.Sprintf(wire.ServerListenerTemplate, fmt.Sprintf("127.0.0.1:%d", 9000+i)))
	}
	_, err = askListeners(t, adsStream(t, cc), node("greedy", "default", "greedy", nil), inbound...)
	wantCode(t, err, codes.ResourceExhausted, "3 server Listener names on one stream are over the limit, 2")
}

// The read-only plaintext port serves client resources to xDS clients
// that cannot do TLS, and nothing else.
func TestPlaintextPortIsReadOnly(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithPlaintextXDSAddress("127.0.0.1:0"))
	reviews := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	if err := tryRegister(t, reviews, reviewsInstance("r1", "127.0.0.1", 9080)); err != nil {
		t.Fatal(err)
	}
	plain := dialCP(t, cp.PlaintextXDSAddr(), insecure.NewCredentials())
	server := fmt.Sprintf(wire.ServerListenerTemplate, "127.0.0.1:9080")
	got, err := askListeners(t, adsStream(t, plain), node("python", "default", "reviews", nil), "reviews.default.svc.cluster.local:9080", server)
	if err != nil || len(got) != 1 || got[0] != "reviews.default.svc.cluster.local:9080" {
		t.Fatalf("plaintext port: %v (%v), want the client Listener only", got, err)
	}
	wantCode(t, tryRegister(t, plain, reviewsInstance("p1", "127.0.0.1", 9081)), codes.Unimplemented, "unknown service meshlet.registry.v1.Registry")
}

func TestInsecurePlaintextOnlyOnLoopback(t *testing.T) {
	_, err := controlplane.Start(t.Context(), controlplane.WithConfigDir(meshtest.WriteConfig(t, nil)),
		controlplane.WithXDSAddress("0.0.0.0:0"), controlplane.WithAdminAddress(""), controlplane.WithLogger(meshtest.Logger()),
		controlplane.WithStateDir(t.TempDir()), controlplane.WithInsecurePlaintext(true))
	if err == nil || !strings.Contains(err.Error(), "plaintext (insecure development mode) is refused on 0.0.0.0:0") {
		t.Fatalf("error %v, want plaintext refused on a wildcard address", err)
	}
}

// TestNoDowngradeByRegistration: a PeerAuthentication DISABLE that selects
// app: legacy cannot be reached by a registration of reviews labelled
// app: legacy (app is the service's), so the reviews cluster stays mTLS.
func TestNoDowngradeByRegistration(t *testing.T) {
	disable := `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: legacy
spec:
  selector:
    matchLabels:
      app: legacy
  mtls:
    mode: DISABLE
`
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "legacy.yaml": disable}))
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	if err := tryRegister(t, cc, reviewsInstance("r1", "127.0.0.1", 9080)); err != nil {
		t.Fatal(err)
	}
	sneaky := reviewsInstance("r2", "127.0.0.1", 9081)
	sneaky.Labels = map[string]string{"app": "legacy", "version": "v1"}
	if err := tryRegister(t, cc, sneaky); err != nil {
		t.Fatal(err)
	}
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	meshtest.WaitUntil(t, 5*time.Second, "both instances in EDS", func() bool {
		for _, r := range xdsOf(dump(t, cp), "ClusterLoadAssignment") {
			if strings.Contains(string(r), cluster) && strings.Count(string(r), "127.0.0.1") == 2 {
				return true
			}
		}
		return false
	})
	for _, r := range xdsOf(dump(t, cp), ".Cluster") {
		if strings.Contains(string(r), `"name":"`+cluster+`"`) && !strings.Contains(string(r), "transportSocket") {
			t.Fatalf("cluster %s is plaintext after a registration labelled app: legacy:\n%s", cluster, r)
		}
	}
}

// xdsOf returns the served resources of the type whose URL ends in suffix.
func xdsOf(d controlplane.ConfigDump, suffix string) []json.RawMessage {
	for typ, x := range d.XDS {
		if strings.HasSuffix(typ, suffix) {
			return x.Resources
		}
	}
	return nil
}

func TestAdminPortLimits(t *testing.T) {
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, nil))
	req, err := http.NewRequest("GET", "http://"+cp.AdminAddr()+"/healthz", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		size int
		want int
	}{{59 << 10, http.StatusOK}, {61 << 10, http.StatusRequestHeaderFieldsTooLarge}} {
		req.Header.Set("X-Big", strings.Repeat("a", tc.size))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("a %d KiB header got %d, want %d", tc.size>>10, resp.StatusCode, tc.want)
		}
	}
}

func TestStartHonoursItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := controlplane.Start(ctx, controlplane.WithConfigDir(meshtest.WriteConfig(t, nil)), controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress(""), controlplane.WithLogger(meshtest.Logger()), controlplane.WithStateDir(t.TempDir()))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Start with an ended context: %v, want context.Canceled", err)
	}
}

// TestDeltaXDSIsRefused: incremental xDS would bypass the per-stream keys
// and identity checks, so it is not served at all.
func TestDeltaXDSIsRefused(t *testing.T) {
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig}))
	cc := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	delta, err := discovery.NewAggregatedDiscoveryServiceClient(cc).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A stream the server ended fails Send with io.EOF; Recv has its status.
	if err := delta.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: "s1"}, TypeUrl: resource.ListenerType,
		ResourceNamesSubscribe: []string{fmt.Sprintf(wire.ServerListenerTemplate, "127.0.0.1:9080")}}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	_, err = delta.Recv()
	wantCode(t, err, codes.Unimplemented, "delta")
}
