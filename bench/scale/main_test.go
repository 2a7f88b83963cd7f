//go:build linux

package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestSmallRunConverges runs the whole benchmark small (N=50 over 5
// services, C=5, one file churn and one registration churn) against the
// real control-plane binary, and checks that every client converged in
// every phase and that the figures are within the run's bounds, with
// resolver.Clients and with -light clients.
func TestSmallRunConverges(t *testing.T) {
	for _, light := range []bool{false, true} {
		t.Run(map[bool]string{false: "resolver", true: "light"}[light], func(t *testing.T) { testSmallRun(t, light) })
	}
}

func testSmallRun(t *testing.T, light bool) {
	c := config{
		n: 50, clients: 5, services: 5, churnPct: 10,
		runs: 1, rounds: 1, regConcurrency: 4,
		timeout: time.Minute, logLevel: "info", seed: 1, light: light,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var out bytes.Buffer
	results, err := run(ctx, c, &out)
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 1 {
		t.Fatalf("%d results, want 1", len(results))
	}
	r := results[0]
	sane := func(what string, ds []time.Duration, want int) {
		t.Helper()
		if len(ds) != want {
			t.Errorf("%s: %d clients converged, want %d", what, len(ds), want)
		}
		for i, d := range ds {
			if d < 0 || d > c.timeout {
				t.Errorf("%s: client %d took %v, want 0..%v", what, i, d, c.timeout)
			}
		}
	}
	sane("initial sync", r.initial, c.clients)
	if r.initialWall <= 0 || r.initialWall > c.timeout {
		t.Errorf("initial sync took %v in all, want 0..%v", r.initialWall, c.timeout)
	}
	if len(r.file) != 1 || len(r.reg) != 1 {
		t.Fatalf("%d file churns and %d registration churns, want 1 each", len(r.file), len(r.reg))
	}
	sane("file churn", r.file[0].prop, c.clients)
	sane("registration churn", r.reg[0].prop, c.clients)
	// A churn cannot reach a client before it is made: a reload follows
	// a write, a push a registration.
	for _, ch := range []churn{r.file[0], r.reg[0]} {
		for _, d := range ch.prop {
			if d <= 0 {
				t.Errorf("propagation %v: want more than 0", d)
			}
		}
	}
	if f := r.file[0].files; f < 1 || f > c.services {
		t.Errorf("file churn rewrote %d files, want 1..%d", f, c.services)
	}
	if got, want := r.reg[0].changes, 2*c.churnSize(); got != want {
		t.Errorf("registration churn: %d registry changes, want %d", got, want)
	}
	for what, rss := range map[string]int64{
		"control plane after sync": r.cpSynced.RSS, "control plane at the end": r.cpEnd.RSS,
		"this process after sync": r.benchSynced.RSS, "this process at the end": r.benchEnd.RSS,
	} {
		// A Go gRPC server or client holds a few MiB at least, and
		// nothing here should come near 1 GiB.
		if rss < 4<<20 || rss > 1<<30 {
			t.Errorf("%s: RSS %d bytes, want 4 MiB..1 GiB", what, rss)
		}
	}
	if light {
		// At least a Cluster and an endpoints response per client, and
		// per churn an endpoints response per client.
		if r.syncResponses < int64(2*c.clients) || r.endResponses < r.syncResponses+int64(2*c.clients) {
			t.Errorf("light clients received %d responses by the sync and %d by the end, want at least %d and %d more",
				r.syncResponses, r.endResponses, 2*c.clients, 2*c.clients)
		}
		if r.syncBytes <= 0 || r.endBytes <= r.syncBytes {
			t.Errorf("light clients received %d bytes by the sync and %d by the end: want some, and more by the end", r.syncBytes, r.endBytes)
		}
	} else if r.syncResponses != 0 {
		t.Errorf("resolver clients counted %d responses, want none counted", r.syncResponses)
	}
	for _, msg := range r.warnings {
		if !devModeWarning(msg) {
			t.Errorf("control plane warned %d×: %s", r.warned[msg], msg)
		}
	}
	for _, want := range []string{"initial sync, each client (ms)", "file churn propagation (ms)", "registration churn propagation (ms)", "control-plane RSS at the end (MiB)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the report has no %q", want)
		}
	}
}

// TestFleetWantsTheExactSet checks that a client converges only when it
// holds exactly the wanted endpoints of every service: not a subset, not
// a superset, not the old set, and that leaving the set again undoes it.
func TestFleetWantsTheExactSet(t *testing.T) {
	set := func(addrs ...string) fingerprint {
		var f fingerprint
		for _, a := range addrs {
			f.add(a)
		}
		return f
	}
	f := newFleet(2, 1)
	c := &member{have: make([]fingerprint, 2)}
	f.clients = append(f.clients, c)
	t0 := time.Unix(1000, 0)
	done := f.expect([]fingerprint{set("10.1.0.1:9080", "10.1.0.2:9080"), set("10.1.0.3:9080")}, t0)
	converged := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	steps := []struct {
		k    int
		fp   fingerprint
		want bool
	}{
		{0, set("10.1.0.1:9080"), false},                                  // a subset
		{0, set("10.1.0.2:9080", "10.1.0.1:9080"), false},                 // service 0 right, 1 not yet
		{1, set("10.1.0.3:9080", "10.1.0.4:9080"), false},                 // a superset
		{1, set("10.1.0.4:9080"), false},                                  // another set of the same size
		{1, set("10.1.0.3:9080"), true},                                   // exactly
		{0, set("10.1.0.1:9080", "10.1.0.2:9080", "10.1.0.5:9080"), true}, // done stays closed
	}
	for i, s := range steps {
		f.update(c, s.k, s.fp, t0.Add(time.Duration(i+1)*time.Second))
		if got := converged(); got != s.want {
			t.Fatalf("step %d: converged %v, want %v", i, got, s.want)
		}
	}
	if !c.at.IsZero() || f.converged != 0 {
		t.Errorf("after leaving the set: at %v, %d converged; want at zero and 0 converged", c.at, f.converged)
	}
}

// TestCLAFingerprintIsResolvers checks that a light client's fingerprint
// of a ClusterLoadAssignment is that of the addresses resolver.Client
// reports as healthy: health UNKNOWN or HEALTHY, IPv6 in brackets.
func TestCLAFingerprintIsResolvers(t *testing.T) {
	lbe := func(ip string, port uint32, h corev3.HealthStatus) *endpointv3.LbEndpoint {
		return &endpointv3.LbEndpoint{
			HealthStatus: h,
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{
				Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
					Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
				}},
			}}},
		}
	}
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "c", Endpoints: []*endpointv3.LocalityLbEndpoints{
		{LbEndpoints: []*endpointv3.LbEndpoint{
			lbe("10.0.0.1", 9080, corev3.HealthStatus_UNKNOWN),
			lbe("10.0.0.2", 9080, corev3.HealthStatus_UNHEALTHY),
			lbe("fd00::1", 80, corev3.HealthStatus_HEALTHY),
		}},
		{Priority: 1, LbEndpoints: []*endpointv3.LbEndpoint{
			lbe("10.0.0.3", 443, corev3.HealthStatus_DRAINING),
			lbe("10.0.0.4", 443, corev3.HealthStatus_HEALTHY),
		}},
	}}
	var want fingerprint
	for _, a := range []string{"10.0.0.1:9080", "[fd00::1]:80", "10.0.0.4:443"} {
		want.add(a)
	}
	b, err := proto.Marshal(cla)
	if err != nil {
		t.Fatal(err)
	}
	name, got, _, err := claFingerprint(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	if string(name) != "c" {
		t.Errorf("cluster_name %q, want \"c\"", name)
	}
	if got != want {
		t.Errorf("fingerprint %+v, want %+v (the three healthy addresses)", got, want)
	}
}
