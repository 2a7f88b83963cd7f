package mesh_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/telemetry"
)

// getMetrics GETs /metrics from an admin handler at base.
func getMetrics(t *testing.T, base string) promText {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s %s", resp.Status, body)
	}
	return strings.Split(string(body), "\n")
}

// The admin handler of a mesh with telemetry serves its metrics at
// /metrics and lists it: with a NACK-free config, the xDS client is
// connected once, has updates of each type and no NACK, and the
// greeter's breaker is closed; after a failure burst, the ejection, the
// breaker's opening and its open state show, with the values the data
// plane has. A mesh without telemetry neither lists nor serves it.
func TestTelemetryStateMetricsOnAdmin(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"rule.yaml": adminRule, "route.yaml": noRetries})
	gm := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"})
	counts := &countingServer{}
	serveHTTPGreeter(t, gm, "v1", &countingHTTP{counts: counts})
	serveHTTPGreeter(t, gm, "v1", &countingHTTP{counts: counts})
	waitRegistered(t, cp, 2)

	tel, err := telemetry.New(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tel.Shutdown(t.Context()) })
	cm := startMesh(t, cp.XDSAddr(), "client", nil, mesh.WithTelemetry(tel))
	hs := httptest.NewServer(cm.AdminHandler())
	t.Cleanup(hs.Close)
	client := httpClientFor(t, cm)
	call := func() error {
		_, err := httpCall(t.Context(), client, sayHelloPath, "")
		return err
	}
	meshtest.WaitUntil(t, 15*time.Second, "a call to succeed", func() bool { return call() == nil })
	meshtest.WaitUntil(t, 15*time.Second, "both greeters in the client's cluster", func() bool { return len(clusterOf(t, hs.URL).Endpoints) == 2 })

	cluster := map[string]string{"cluster": greeterCluster}
	state := func(s string) map[string]string { return map[string]string{"cluster": greeterCluster, "state": s} }
	m := getMetrics(t, hs.URL)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"meshlet_xds_connected", nil, 1},
		{"meshlet_xds_reconnects_total", nil, 0},
		{"meshlet_outlier_ejections_total", cluster, 0},
		{"meshlet_circuit_breaker_opens_total", cluster, 0},
		{"meshlet_circuit_breaker_state", state("closed"), 1},
		{"meshlet_circuit_breaker_state", state("open"), 0},
		{"meshlet_circuit_breaker_state", state("half-open"), 0},
	} {
		if got := m.value(t, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	for _, typ := range []string{"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"} {
		ty := map[string]string{"type": typ}
		if got := m.value(t, "meshlet_xds_nacks_total", ty); got != 0 {
			t.Errorf("meshlet_xds_nacks_total{type=%s} = %v, want 0", typ, got)
		}
		if got := m.value(t, "meshlet_xds_updates_total", ty); got < 1 {
			t.Errorf("meshlet_xds_updates_total{type=%s} = %v, want at least 1", typ, got)
		}
	}
	if m.sum("istio_requests_total", map[string]string{"reporter": "source", "destination_service_name": "greeter"}) < 1 {
		t.Errorf("/metrics has no istio_requests_total of the calls made")
	}

	// The burst, as in TestAdminHandler: 4 failures over two endpoints
	// eject one (maxEjectionPercent 50) and open the breaker at the 3rd.
	counts.failing.Store(true)
	for i := range 4 {
		if call() == nil {
			t.Fatalf("call %d of the burst succeeded", i)
		}
	}
	c := clusterOf(t, hs.URL)
	if c.Ejections != 1 || c.Breaker == nil || c.Breaker.Opens != 1 || c.Breaker.State != "open" {
		t.Fatalf("the data plane has %d ejections and breaker %+v; want 1 and open once", c.Ejections, c.Breaker)
	}
	m = getMetrics(t, hs.URL)
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"meshlet_outlier_ejections_total", cluster, 1},
		{"meshlet_circuit_breaker_opens_total", cluster, 1},
		{"meshlet_circuit_breaker_state", state("closed"), 0},
		{"meshlet_circuit_breaker_state", state("open"), 1},
		{"meshlet_xds_connected", nil, 1},
	} {
		if got := m.value(t, c.name, c.labels); got != c.want {
			t.Errorf("after the burst: %s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}

	// The index lists /metrics; without telemetry it is neither listed
	// nor served.
	resp, err := http.Get(hs.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	index, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(index), "/metrics") {
		t.Errorf("the index does not list /metrics:\n%s", index)
	}
	plain := httptest.NewServer(gm.AdminHandler())
	t.Cleanup(plain.Close)
	for path, want := range map[string]int{"/metrics": http.StatusNotFound, "/": http.StatusOK} {
		resp, err := http.Get(plain.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (path == "/" && strings.Contains(string(body), "/metrics")) {
			t.Errorf("without telemetry, GET %s: %s %q; want %d and no /metrics", path, resp.Status, body, want)
		}
	}
}

// value is the value of the one series of name whose labels include
// want (nil: a series without labels); the test fails if there is not
// exactly one.
func (p promText) value(t *testing.T, name string, want map[string]string) float64 {
	t.Helper()
	var found []float64
	for _, line := range p {
		series, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		n, labels, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		got := parseLabels(strings.TrimSuffix(labels, "}"))
		match := true
		for k, v := range want {
			if got[k] != v {
				match = false
			}
		}
		if match {
			var f float64
			if _, err := fmt.Sscan(val, &f); err != nil {
				t.Fatalf("%s: value %q: %v", line, val, err)
			}
			found = append(found, f)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d series of %s%v in /metrics, want 1", len(found), name, want)
	}
	return found[0]
}
