package controlplane_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/meshtest"
)

// lines returns the log lines that contain every one of parts.

// drainAcked registers a reviews instance, asks to drain it while a
// caller that never ACKs watches its endpoints, and returns how long the
// control plane took to answer drained, and whether it said every caller
// ACKed.
func drainAcked(t *testing.T, cp *controlplane.Server) (time.Duration, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()

	caller := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "productpage"))
	ads, err := discovery.NewAggregatedDiscoveryServiceClient(caller).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const cla = "outbound|9080||reviews.default.svc.cluster.local"
	if err := ads.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: "silent-caller"}, TypeUrl: resource.EndpointType, ResourceNames: []string{cla}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ads.Recv(); err != nil { // and never ACK it
		t.Fatal(err)
	}

	server := dialCP(t, cp.XDSAddr(), meshtest.ControlPlaneCredentials(t, cp, "default", "reviews"))
	reg, err := registrypb.NewRegistryClient(server).Register(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Send(&registrypb.RegisterRequest{Instance: reviewsInstance("r1", "127.0.0.1", 9080), State: registrypb.State_SERVING}); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Recv(); err != nil {
		t.Fatal(err)
	}
	asked := time.Now()
	if err := reg.Send(&registrypb.RegisterRequest{State: registrypb.State_DRAINING}); err != nil {
		t.Fatal(err)
	}
	resp, err := reg.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetDrained() {
		t.Fatalf("answer to DRAINING = %v, want drained", resp)
	}
	return time.Since(asked), resp.GetAckedByAll()
}

// The control plane's drain wait is WithDrainAckTimeout; the old name,
// WithDrainTimeout, still sets it and says it is deprecated.
func TestDrainAckTimeoutAndItsDeprecatedName(t *testing.T) {
	const timeout = 250 * time.Millisecond
	cases := []struct {
		name       string
		opt        controlplane.Option
		deprecated bool
	}{
		{"WithDrainAckTimeout", controlplane.WithDrainAckTimeout(timeout), false},
		{"WithDrainTimeout", controlplane.WithDrainTimeout(timeout), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := meshtest.CaptureLog()
			dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig})
			cp := meshtest.StartControlPlane(t, dir, controlplane.WithLogger(log), tc.opt)
			took, acked := drainAcked(t, cp)
			if acked {
				t.Errorf("drained with ackedByAll, but a caller never ACKed")
			}
			// The answer comes when the timeout ends: not before, and not
			// at the 1s meshtest sets, or the 5s default.
			if took < timeout || took > timeout+600*time.Millisecond {
				t.Errorf("drained after %v, want just after the %v ACK timeout", took, timeout)
			}
			got := logs.Lines("level=WARN", "WithDrainTimeout is deprecated", "use WithDrainAckTimeout")
			if tc.deprecated && len(got) != 1 {
				t.Errorf("want one deprecation WARN for WithDrainTimeout, got %q in:\n%s", got, logs)
			}
			if !tc.deprecated && len(logs.Lines("deprecated")) != 0 {
				t.Errorf("a deprecation line without a deprecated option:\n%s", logs)
			}
		})
	}
}

// Closing the control plane ends every registration stream. That is said
// once, at Info; a WARN per instance stays for connections really lost.
func TestCloseIsNotALostConnection(t *testing.T) {
	log, logs := meshtest.CaptureLog()
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithLogger(log))
	creds := meshtest.ControlPlaneCredentials(t, cp, "default", "reviews")
	staying := dialCP(t, cp.XDSAddr(), creds)
	for i, id := range []string{"r1", "r2"} {
		if err := tryRegister(t, staying, reviewsInstance(id, "127.0.0.1", uint32(9080+i))); err != nil {
			t.Fatal(err)
		}
	}

	// A server that goes away is still a WARN.
	going := dialCP(t, cp.XDSAddr(), creds)
	if err := tryRegister(t, going, reviewsInstance("r3", "127.0.0.1", 9082)); err != nil {
		t.Fatal(err)
	}
	going.Close()
	const lost = "instance connection lost; removing it after the grace period"
	meshtest.WaitUntil(t, 5*time.Second, "the WARN for r3's lost connection", func() bool {
		return len(logs.Lines("level=WARN", lost, "id=r3")) == 1
	})

	cp.Close()
	if got := logs.Lines(lost); len(got) != 1 {
		t.Errorf("Close logged lost connections: want only r3's, got:\n%s", strings.Join(got, "\n"))
	}
	if got := logs.Lines("level=INFO", `msg="control plane stopping; 2 registrations end"`); len(got) != 1 {
		t.Errorf("want one Info line for the 2 registrations that Close ends, got:\n%s", logs)
	}
	_, after, _ := strings.Cut(logs.String(), "control plane stopping")
	if strings.Contains(after, "level=WARN") || strings.Contains(after, "level=ERROR") {
		t.Errorf("a WARN or ERROR after Close began:\n%s", after)
	}
}

const securityConfig = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews
spec:
  selector:
    matchLabels:
      app: reviews
  action: ALLOW
  rules:
  - from:
    - source:
        principals:
        - cluster.local/ns/default/sa/productpage
---
apiVersion: networking.istio.io/v1
kind: WorkloadGroup
metadata:
  name: reviews-v2
spec:
  template:
    serviceAccount: bookinfo-reviews
    labels:
      app: reviews
      version: v2
`

// An empty list on /debug/config is [], not null.
func TestDebugConfigListsAreNeverNull(t *testing.T) {
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, nil))
	resp, err := http.Get("http://" + cp.AdminAddr() + "/debug/config")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var d map[string]json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"resources", "services", "instances", "warnings"} {
		if got := string(d[field]); got != "[]" {
			t.Errorf("%s = %s, want []", field, got)
		}
	}
	var xds map[string]struct {
		Resources json.RawMessage `json:"resources"`
	}
	if err := json.Unmarshal(d["xds"], &xds); err != nil {
		t.Fatal(err)
	}
	if len(xds) == 0 {
		t.Errorf("xds = %s, want every type", d["xds"])
	}
	for typ, x := range xds {
		if got := string(x.Resources); got != "[]" {
			t.Errorf("xds[%s].resources = %s, want []", typ, got)
		}
	}
	if got := string(d["status"]); got != `"ok"` {
		t.Errorf("status = %s, want \"ok\"", got)
	}
}

// /debug/config dumps resources of every kind, each with its file.
func TestDebugConfigDumpsEveryKind(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute, "security.yaml": securityConfig})
	cp := meshtest.StartControlPlane(t, dir)
	var got []string
	for _, r := range dump(t, cp).Resources {
		got = append(got, fmt.Sprintf("%s %s/%s %s", r.Kind, r.Namespace, r.Name, filepath.Base(r.File)))
		if len(r.Spec) < 3 {
			t.Errorf("%s %s/%s has spec %s", r.Kind, r.Namespace, r.Name, r.Spec)
		}
	}
	slices.Sort(got)
	want := []string{
		"AuthorizationPolicy default/reviews security.yaml",
		"DestinationRule default/reviews reviews.yaml",
		"PeerAuthentication istio-system/default security.yaml",
		"ServiceEntry default/reviews reviews.yaml",
		"VirtualService default/reviews route.yaml",
		"WorkloadGroup default/reviews-v2 security.yaml",
	}
	if !slices.Equal(got, want) {
		t.Errorf("resources:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// A refused change stays on /debug/config after a good load replaced it,
// as the previous refusal, and the status says the config in force is
// good.
func TestDebugConfigKeepsThePreviousRefusal(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir)
	if d := dump(t, cp); d.Status != controlplane.ConfigOK || d.LastError != nil || d.PreviousRefusal != nil {
		t.Fatalf("at start: status %q, lastError %v, previousRefusal %v; want ok and none", d.Status, d.LastError, d.PreviousRefusal)
	}

	meshtest.WriteFile(t, dir, "route.yaml", strings.Replace(goodRoute, "weight: 20", "weight: 30", 1))
	var refused controlplane.ConfigDump
	meshtest.WaitUntil(t, 3*time.Second, "the refusal", func() bool {
		refused = dump(t, cp)
		return refused.LastError != nil
	})
	if refused.Status != controlplane.ConfigRefused || refused.PreviousRefusal != nil || !refused.LoadedAt.Before(refused.LastError.Time) {
		t.Errorf("after a refusal: status %q, previousRefusal %v, loadedAt %v, refused at %v; want refused, none, and the config in force older",
			refused.Status, refused.PreviousRefusal, refused.LoadedAt, refused.LastError.Time)
	}

	meshtest.WriteFile(t, dir, "route.yaml", goodRoute)
	var good controlplane.ConfigDump
	meshtest.WaitUntil(t, 3*time.Second, "the good config", func() bool {
		good = dump(t, cp)
		return good.Status == controlplane.ConfigOK
	})
	p := good.PreviousRefusal
	switch {
	case good.LastError != nil:
		t.Errorf("lastError %v after a good load, want null", good.LastError)
	case p == nil:
		t.Fatal("the refusal is gone after a good load, want it as previousRefusal")
	case !p.Time.Equal(refused.LastError.Time) || p.Message != refused.LastError.Message:
		t.Errorf("previousRefusal %v, want the refusal %v", p, refused.LastError)
	case !p.ReplacedAt.Equal(good.LoadedAt) || !p.ReplacedAt.After(p.Time):
		t.Errorf("previousRefusal replaced at %v, refused at %v, config loaded at %v; want replaced when the config in force was loaded, after the refusal",
			p.ReplacedAt, p.Time, good.LoadedAt)
	}
}

// A reload logs the resources it added, changed and removed, each with
// its file.
func TestReloadLogsWhatChanged(t *testing.T) {
	log, logs := meshtest.CaptureLog()
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	meshtest.StartControlPlane(t, dir, controlplane.WithLogger(log))
	steps := []struct {
		name   string
		change func()
		want   string // the whole message and attributes after dir=
	}{
		{"a changed spec", func() {
			meshtest.WriteFile(t, dir, "route.yaml", strings.NewReplacer("weight: 80", "weight: 50", "weight: 20", "weight: 50").Replace(goodRoute))
		}, `msg="config loaded" changed="VirtualService default/reviews (route.yaml)"`},
		{"a new file", func() { meshtest.WriteFile(t, dir, "security.yaml", securityConfig) },
			`msg="config loaded" added="WorkloadGroup default/reviews-v2 (security.yaml), PeerAuthentication istio-system/default (security.yaml), AuthorizationPolicy default/reviews (security.yaml)"`},
		{"a moved resource", func() { rename(t, filepath.Join(dir, "route.yaml"), filepath.Join(dir, "vs.yaml")) },
			`msg="config loaded" changed="VirtualService default/reviews (vs.yaml, was in route.yaml)"`},
		{"a removed file", func() { remove(t, filepath.Join(dir, "vs.yaml")) },
			`msg="config loaded" removed="VirtualService default/reviews (vs.yaml)"`},
		{"a file written again as it was", func() { meshtest.WriteFile(t, dir, "security.yaml", securityConfig) },
			`msg="config loaded; no resource changed"`},
	}
	for _, step := range steps {
		before := len(logs.Lines("config loaded"))
		step.change()
		meshtest.WaitUntil(t, 5*time.Second, "the reload after "+step.name, func() bool { return len(logs.Lines("config loaded")) > before })
		got := logs.Lines("config loaded")[before:]
		// What a reload logs, without its time, its directory and how long
		// its stages took.
		var msgs []string
		for _, l := range got {
			_, l, _ = strings.Cut(l, "level=INFO ")
			l, stages, ok := strings.Cut(l, " since_change=")
			if !ok || !strings.Contains(stages, " parsed_documents=") || !strings.Contains(stages, " serve=") {
				t.Errorf("after %s, the reload logged no stage times: %s", step.name, l+stages)
			}
			msgs = append(msgs, strings.Replace(l, " dir="+dir, "", 1))
		}
		if len(msgs) != 1 || msgs[0] != step.want {
			t.Errorf("after %s, the reload logged:\n%s\nwant:\n%s", step.name, strings.Join(msgs, "\n"), step.want)
		}
	}
}

func rename(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

func remove(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}

// TestKubernetesManifestsAreSkipped: a Service and a Deployment beside the
// Istio YAML are skipped, each with one log line, and the rest loads.
func TestKubernetesManifestsAreSkipped(t *testing.T) {
	log, logs := meshtest.CaptureLog()
	k8s := `apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - port: 9080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: reviews-v1
spec:
  replicas: 1
`
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "k8s.yaml": k8s}), controlplane.WithLogger(log))
	if d := cp.Dump(); len(d.Resources) == 0 {
		t.Fatal("the Istio resources did not load")
	}
	for _, kind := range []string{"kind=Service", "kind=Deployment"} {
		if got := logs.Lines("not Istio config; skipped", "file=k8s.yaml", kind); len(got) != 1 {
			t.Errorf("%d log lines for %s, want 1:\n%s", len(got), kind, logs.String())
		}
	}
}

// A server whose connection is lost stays registered, and in callers'
// endpoints, for the grace period, not a moment less, and then leaves. The
// grace runs on the clock of WithClock, which the test moves past it.
func TestLostRegistrationLeavesAfterTheGrace(t *testing.T) {
	const grace = 10 * time.Second
	clock := meshtest.NewClock(time.Now())
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig}),
		controlplane.WithClock(clock), controlplane.WithRegistrationGrace(grace), controlplane.WithWarmup(time.Hour))
	creds := meshtest.ControlPlaneCredentials(t, cp, "default", "reviews")
	going := dialCP(t, cp.XDSAddr(), creds)
	if err := tryRegister(t, going, reviewsInstance("r1", "127.0.0.1", 9080)); err != nil {
		t.Fatal(err)
	}
	served := func() bool {
		for _, r := range dump(t, cp).XDS[resource.EndpointType].Resources {
			if strings.Contains(string(r), "127.0.0.1") {
				return true
			}
		}
		return false
	}
	meshtest.WaitUntil(t, 5*time.Second, "r1 in EDS", served)

	going.Close()
	meshtest.WaitUntil(t, 5*time.Second, "r1 marked lost", func() bool {
		e := registryEntries(t, cp)
		return len(e) == 1 && e[0].Lost
	})
	if got := clock.Pending(); !slices.Equal(got, []time.Duration{grace, time.Hour}) {
		t.Fatalf("timers %v, want the grace period's, %v, and the warm-up's", got, grace)
	}
	clock.Advance(grace - time.Nanosecond)
	if e := registryEntries(t, cp); len(e) != 1 || !served() {
		t.Fatalf("r1 left before the grace period ended: %+v", e)
	}
	clock.Advance(time.Nanosecond)
	if e := registryEntries(t, cp); len(e) != 0 {
		t.Fatalf("r1 still registered after the grace period: %+v", e)
	}
	meshtest.WaitUntil(t, 5*time.Second, "r1 out of EDS", func() bool { return !served() })
}
