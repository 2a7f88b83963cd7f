package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"go.uber.org/goleak"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// meshctl runs the command with args and returns its exit code and output.
func meshctl(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut strings.Builder
	code = run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestValidate(t *testing.T) {
	code, out, errOut := meshctl(t, "validate", "testdata/bookinfo")
	if code != exitOK || out != "testdata/bookinfo: valid\n" || errOut != "" {
		t.Errorf("validate bookinfo: exit %d, stdout %q, stderr %q; want 0 and valid", code, out, errOut)
	}

	code, out, _ = meshctl(t, "validate", "testdata/bad")
	if code != exitError {
		t.Errorf("validate bad: exit %d, want %d", code, exitError)
	}
	// Every problem, each with its file, resource and field.
	for _, want := range []string{
		"routes.yaml: VirtualService default/reviews: spec.http[0].mirror: out of scope for meshlet",
		"routes.yaml: VirtualService default/reviews: spec.http[0].route: the weights of the 2 destinations sum to 90",
		`routes.yaml: VirtualService default/reviews: spec.http[0].route[1].destination.subset: subset "v3" is not defined`,
		"testdata/bad: 3 error(s)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate bad does not say %q:\n%s", want, out)
		}
	}

	// Flags after the command, and JSON.
	code, out, _ = meshctl(t, "validate", "testdata/bad", "-o", "json")
	var v struct {
		Valid  bool
		Errors []problem
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("validate -o json: %v:\n%s", err, out)
	}
	if code != exitError || v.Valid || len(v.Errors) != 3 || v.Errors[0].Path != "spec.http[0].mirror" || v.Errors[0].File != "routes.yaml" {
		t.Errorf("validate -o json: exit %d, %+v", code, v)
	}

	// A directory that is not there is an error too, not "valid".
	code, out, _ = meshctl(t, "validate", filepath.Join(t.TempDir(), "missing"))
	if code != exitError || !strings.Contains(out, "missing") {
		t.Errorf("validate of a missing directory: exit %d:\n%s", code, out)
	}
}

func TestUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"bogus"}, {"validate"}, {"config", "show", "x"}, {"-o", "yaml", "status"}} {
		if code, _, errOut := meshctl(t, args...); code != exitUsage || !strings.Contains(errOut, "Usage:") {
			t.Errorf("meshctl %q: exit %d, stderr %q; want %d and the usage", args, code, errOut, exitUsage)
		}
	}
	if code, out, _ := meshctl(t, "--help"); code != exitOK || !strings.Contains(out, "meshctl [flags] status") {
		t.Errorf("--help: exit %d:\n%s", code, out)
	}
	// No control plane: exit 1, and say which address was tried and how
	// to change it.
	code, _, errOut := meshctl(t, "--admin", "127.0.0.1:1", "status")
	if code != exitError || !strings.Contains(errOut, "127.0.0.1:1") || !strings.Contains(errOut, "MESHLET_ADMIN") {
		t.Errorf("status without a control plane: exit %d, stderr %q", code, errOut)
	}
}

// startControlPlane starts the control plane in its secured mode (TLS on
// the xDS port, client certificates from its CA) on bookinfo's config.
func startControlPlane(t *testing.T) *controlplane.Server {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"services.yaml", "destination-rules.yaml", "routes.yaml", "security.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata/bookinfo", f))
		if err != nil {
			t.Fatal(err)
		}
		meshtest.WriteFile(t, dir, f, string(b))
	}
	cp := meshtest.StartControlPlane(t, dir)
	if cp.Roots() == nil {
		t.Fatal("the control plane is not in its TLS mode")
	}
	return cp
}

// workload is a meshlet resolver of service sa, over mTLS with its own
// SVID, that follows reviews as a caller does. It returns once it has
// reviews' routes.
func workload(t *testing.T, cp *controlplane.Server, sa string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := resolver.New(ctx, resolver.WithServers(cp.XDSAddr()),
		resolver.WithNode(resolver.Node{Namespace: "default", ServiceAccount: sa, WorkloadName: sa, Labels: map[string]string{"app": sa}}),
		resolver.WithDialOptions(grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", sa))),
		resolver.WithLogger(meshtest.Logger()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	var routes atomic.Int32
	names := make(chan string, 1)
	t.Cleanup(c.WatchListener("reviews.default.svc.cluster.local:9080", func(l resolver.Listener, err error) {
		if err == nil && l.RouteConfigName != "" {
			select {
			case names <- l.RouteConfigName:
			default:
			}
		}
	}))
	select {
	case name := <-names:
		t.Cleanup(c.WatchRouteConfig(name, func(_ resolver.RouteConfig, err error) {
			if err == nil {
				routes.Store(1)
			}
		}))
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no Listener for reviews", sa)
	}
	meshtest.WaitUntil(t, 5*time.Second, sa+"'s routes", func() bool { return routes.Load() == 1 })
}

// nacker is a raw ADS client of service details that rejects the
// Listener it is sent, as a client that cannot use it would.
func nacker(t *testing.T, cp *controlplane.Server) {
	t.Helper()
	cc, err := grpc.NewClient(cp.XDSAddr(), grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", "details")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(cc).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{"NAMESPACE": "default", "WORKLOAD_NAME": "details"})
	const name = "reviews.default.svc.cluster.local:9080"
	if err := ads.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "details-nacker", Metadata: md}, TypeUrl: resource.ListenerType, ResourceNames: []string{name}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ads.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if err := ads.Send(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType, ResourceNames: []string{name}, ResponseNonce: resp.GetNonce(),
		ErrorDetail: &rpcstatus.Status{Code: 3, Message: "listener rejected by the meshctl test"}}); err != nil {
		t.Fatal(err)
	}
}

// register registers an instance of reviews v1 with reviews' own SVID,
// until the test ends.
func register(t *testing.T, cp *controlplane.Server, id string, port uint32) {
	t.Helper()
	cc, err := grpc.NewClient(cp.XDSAddr(), grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", "reviews")))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := registrypb.NewRegistryClient(cc).Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	inst := &registrypb.Instance{Id: id, Service: "reviews", Namespace: "default", Address: "127.0.0.1", Port: port, Protocol: "GRPC",
		Labels: map[string]string{"version": "v1"}}
	if err := stream.Send(&registrypb.RegisterRequest{Instance: inst, State: registrypb.State_SERVING}); err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

// status lists every connected workload with its proven identity, and a
// NACK once one happens, against the control plane in its secured mode.
func TestStatus(t *testing.T) {
	cp := startControlPlane(t)
	admin := "--admin=" + cp.AdminAddr()
	workload(t, cp, "productpage")
	workload(t, cp, "ratings")

	code, out, errOut := meshctl(t, admin, "status")
	if code != exitOK {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	rows := strings.Split(strings.TrimSpace(out), "\n")
	if len(rows) != 3 || !strings.HasPrefix(rows[0], "NODE ID") {
		t.Fatalf("status: want a header and 2 workloads:\n%s", out)
	}
	for _, sa := range []string{"productpage", "ratings"} {
		row := rowOf(rows, "spiffe://cluster.local/ns/default/sa/"+sa)
		if row == nil || row[1] != sa || row[2] != "default" {
			t.Errorf("status: no row for %s with its service, namespace and SPIFFE ID:\n%s", sa, out)
			continue
		}
		// CDS, LDS, EDS, RDS: it asked for Listeners and routes only.
		if got := strings.Join(row[4:8], " "); got != "- SYNCED - SYNCED" {
			t.Errorf("status of %s: %q, want - SYNCED - SYNCED:\n%s", sa, got, out)
		}
	}
	if strings.Contains(out, "NACK") {
		t.Errorf("status shows a NACK before any:\n%s", out)
	}

	nacker(t, cp)
	meshtest.WaitUntil(t, 5*time.Second, "the NACK in meshctl status", func() bool {
		_, out, _ = meshctl(t, admin, "status")
		return strings.Contains(out, "NACKED")
	})
	rows = strings.Split(out, "\n")
	row := rowOf(rows, "details-nacker")
	if row == nil || row[1] != "details" || row[3] != "spiffe://cluster.local/ns/default/sa/details" || row[5] != "NACKED" {
		t.Errorf("status: want details-nacker's Listener NACKED with its identity:\n%s", out)
	}
	if !strings.Contains(out, "details-nacker Listener: version") || !strings.Contains(out, "listener rejected by the meshctl test") {
		t.Errorf("status does not give the NACK's detail:\n%s", out)
	}
	if len(rowsWith(rows, "spiffe://")) != 3 {
		t.Errorf("status: want 3 workloads:\n%s", out)
	}

	code, out, _ = meshctl(t, admin, "-o", "json", "status")
	var clients []controlplane.Client
	if err := json.Unmarshal([]byte(out), &clients); err != nil || code != exitOK {
		t.Fatalf("status -o json: exit %d, %v:\n%s", code, err, out)
	}
	nacked := 0
	for _, c := range clients {
		if l := c.Types["Listener"]; l != nil && l.Status == controlplane.StatusNacked && l.NackDetail == "listener rejected by the meshctl test" {
			nacked++
		}
	}
	if len(clients) != 3 || nacked != 1 {
		t.Errorf("status -o json: %d clients, %d NACKed; want 3 and 1:\n%s", len(clients), nacked, out)
	}
}

func rowOf(rows []string, cell string) []string {
	for _, r := range rows {
		f := strings.Fields(r)
		for _, c := range f {
			if c == cell {
				return f
			}
		}
	}
	return nil
}

func rowsWith(rows []string, s string) []string {
	var out []string
	for _, r := range rows {
		if strings.Contains(r, s) {
			out = append(out, r)
		}
	}
	return out
}

func TestDescribe(t *testing.T) {
	cp := startControlPlane(t)
	admin := "--admin=" + cp.AdminAddr()
	register(t, cp, "reviews-1", 19080)
	meshtest.WaitUntil(t, 5*time.Second, "reviews-1's endpoint", func() bool {
		_, out, _ := meshctl(t, admin, "describe", "reviews")
		return strings.Contains(out, "outbound|9080|v1|reviews.default.svc.cluster.local: 127.0.0.1:19080")
	})
	code, out, _ := meshctl(t, admin, "describe", "reviews.default")
	for _, want := range []string{
		"Service:   reviews.default.svc.cluster.local",
		"9080 GRPC grpc",
		"VirtualService default/reviews (routes.yaml)",
		"DestinationRule default/reviews (destination-rules.yaml)",
		"v1 (default/reviews) {version=v1}: reviews-1",
		"v2 (default/reviews) {version=v2}: -",
		"reviews-1  127.0.0.1:19080  SERVING",
		"outbound|9080|v3|reviews.default.svc.cluster.local: -",
		"PeerAuthentication istio-system/default (security.yaml)",
		"AuthorizationPolicy default/reviews (security.yaml)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe reviews does not say %q:\n%s", want, out)
		}
	}
	if code != exitOK || strings.Contains(out, "VirtualService default/ratings") {
		t.Errorf("describe reviews: exit %d, or ratings' route in it:\n%s", code, out)
	}
	// ratings: the reviews policy does not select it; the mesh-wide one does.
	_, out, _ = meshctl(t, admin, "describe", "ratings")
	if strings.Contains(out, "AuthorizationPolicy default/reviews") || !strings.Contains(out, "PeerAuthentication istio-system/default") {
		t.Errorf("describe ratings: wrong policies:\n%s", out)
	}
	code, _, errOut := meshctl(t, admin, "describe", "nosuch")
	if code != exitError || !strings.Contains(errOut, `no service "nosuch"`) || !strings.Contains(errOut, "reviews.default.svc.cluster.local") {
		t.Errorf("describe nosuch: exit %d, stderr %q", code, errOut)
	}
}

func TestConfigDump(t *testing.T) {
	cp := startControlPlane(t)
	admin := "--admin=" + cp.AdminAddr()
	workload(t, cp, "productpage")
	workload(t, cp, "ratings")
	code, out, errOut := meshctl(t, admin, "config", "dump", "productpage")
	if code != exitOK {
		t.Fatalf("config dump: exit %d: %s", code, errOut)
	}
	for _, want := range []string{"service productpage, spiffe://cluster.local/ns/default/sa/productpage", "Listener", "reviews.default.svc.cluster.local:9080", "RouteConfiguration"} {
		if !strings.Contains(out, want) {
			t.Errorf("config dump productpage does not say %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "sa/ratings") {
		t.Errorf("config dump productpage shows ratings:\n%s", out)
	}
	code, out, _ = meshctl(t, admin, "config", "dump", "productpage.default", "-o", "json")
	var wcs []controlplane.WorkloadConfig
	if err := json.Unmarshal([]byte(out), &wcs); err != nil || code != exitOK || len(wcs) != 1 {
		t.Fatalf("config dump -o json: exit %d, %v, %d workloads:\n%s", code, err, len(wcs), out)
	}
	if l := wcs[0].XDS[resource.ListenerType]; len(l.Resources) != 1 || resourceName(l.Resources[0]) != "reviews.default.svc.cluster.local:9080" {
		t.Errorf("config dump -o json: productpage's Listeners %s", l.Resources)
	}
	code, _, errOut = meshctl(t, admin, "config", "dump", "nobody")
	if code != exitError || !strings.Contains(errOut, `no connected workload matches "nobody"`) {
		t.Errorf("config dump nobody: exit %d, stderr %q", code, errOut)
	}
}
