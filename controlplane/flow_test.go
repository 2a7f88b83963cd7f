package controlplane_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

// flowEndpoints makes service churn-0's ClusterLoadAssignment about
// 100 KiB: larger than the 64 KiB a stuck client's stream window lets
// out, so that the rest of it stays queued in the control plane.
const flowEndpoints = 3500

func flowAddrs(gen int) []string {
	out := make([]string, flowEndpoints)
	for i := range out {
		out[i] = fmt.Sprintf("10.%d.%d.%d:9080", gen, i/250, i%250+1)
	}
	return out
}

// stuckClient subscribes to cluster's endpoints on a connection of its
// own with a fixed 64 KiB window and never reads: the control plane's
// response to it cannot be written past the window. It returns the
// stream, to see it end.
func stuckClient(t *testing.T, cp *controlplane.Server, sa, cluster string) discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient {
	t.Helper()
	cc, err := grpc.NewClient(cp.XDSAddr(),
		grpc.WithTransportCredentials(meshtest.ControlPlaneCredentials(t, cp, "default", sa)),
		// Fixed windows: no BDP estimation growing them.
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ads := adsStream(t, cc)
	if err := ads.Send(&discovery.DiscoveryRequest{Node: node(sa, "default", sa, nil), TypeUrl: resource.EndpointType, ResourceNames: []string{cluster}}); err != nil {
		t.Fatal(err)
	}
	return ads
}

// sendMetrics returns the send budget's series on /metrics, by the name
// after "meshlet_controlplane_xds_send_". It does not fail the test, so
// that a goroutine can call it.
func sendMetrics(cp *controlplane.Server) (map[string]float64, error) {
	resp, err := http.Get("http://" + cp.AdminAddr() + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, ok := strings.CutPrefix(sc.Text(), controlplane.MetricsPrefix+"xds_send_")
		if !ok {
			continue
		}
		i := strings.LastIndexByte(name, ' ')
		v, err := strconv.ParseFloat(name[i+1:], 64)
		if err != nil {
			return nil, fmt.Errorf("/metrics line %q: %w", sc.Text(), err)
		}
		out[name[:i]] = v
	}
	return out, sc.Err()
}

// Clients that do not read make the control plane hold no more than its
// send budget, do not keep other clients from their pushes for longer
// than the send timeout, and are cut off after it, with a WARN each.
func TestSlowClientsAreBoundedAndCutOff(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"churn-0.yaml": churnFile(0, hosts(flowAddrs(1)))})
	log, logs := meshtest.CaptureLog()
	const sendTimeout = time.Second
	// Two stuck clients' responses fit; a third's does not: it, and the
	// good client, wait until the first two are cut off.
	const budget = 250 << 10
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithLogger(log),
		controlplane.WithLimits(controlplane.Limits{SendBytes: budget, SendTimeout: sendTimeout}))
	cluster := churnCluster(0)

	var (
		mu          sync.Mutex
		maxInFlight float64
		samples     int
	)
	ctx, stop := context.WithCancel(t.Context())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for range 3000 { // at most 30s
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			v, err := sendMetrics(cp)
			if err != nil {
				continue // the control plane is starting or stopping
			}
			mu.Lock()
			maxInFlight = max(maxInFlight, v["in_flight_bytes"])
			samples++
			mu.Unlock()
		}
	}()
	defer func() { stop(); <-sampled }()

	var stuck []discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	for i := range 3 {
		stuck = append(stuck, stuckClient(t, cp, fmt.Sprintf("stuck-%d", i), cluster))
	}
	eds := watchEndpoints(t, cp, cluster)
	start := time.Now()
	first := nextEDS(t, eds, "initial, with three stuck clients")
	size := proto.Size(first.clas[cluster])
	if n := endpointCount(first.clas[cluster]); n != flowEndpoints {
		t.Fatalf("initial EDS response: %d endpoints, want %d", n, flowEndpoints)
	}
	if size < 80<<10 || 2*size > budget || 3*size < budget {
		t.Fatalf("the assignment is %d bytes: the test needs two of them within the budget, %d, and three over it", size, budget)
	}
	t.Logf("assignment of %d bytes reached the good client after %v", size, time.Since(start))

	// A change reaches the good client while stuck clients are (or were)
	// holding their responses.
	path := filepath.Join(dir, "churn-0.yaml")
	if err := os.WriteFile(path+".tmp", []byte(churnFile(0, hosts(flowAddrs(2)))), 0o644); err != nil {
		t.Fatal(err)
	}
	rename(t, path+".tmp", path)
	next := nextEDS(t, eds, "after the change")
	if n := endpointCount(next.clas[cluster]); n != flowEndpoints || next.version == first.version {
		t.Fatalf("after the change: %d endpoints at version %q, want %d at a new version", n, next.version, flowEndpoints)
	}

	// Every stuck client is cut off after the send timeout. None is read
	// before the control plane has cut all three: reading the last one,
	// whose response was sent only once the first two were cut, would
	// let that response through before its timeout.
	cutOff := time.Now().Add(10 * sendTimeout)
	for {
		m, err := sendMetrics(cp)
		if err != nil {
			t.Fatal(err)
		}
		if m["timeouts_total"] >= 3 {
			break
		}
		if time.Now().After(cutOff) {
			t.Fatalf("metrics %v: want 3 timeouts within %v; log:\n%s", m, 10*sendTimeout, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Their streams are closed, and what they held is given back.
	for i, ads := range stuck {
		done := make(chan error, 1)
		go func() {
			for {
				if _, err := ads.Recv(); err != nil {
					done <- err
					return
				}
			}
		}()
		select {
		case err := <-done:
			t.Logf("stuck client %d: %v", i, err)
		case <-time.After(10 * sendTimeout):
			t.Fatalf("stuck client %d: its stream is still open after %v", i, 10*sendTimeout)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := sendMetrics(cp)
		if err != nil {
			t.Fatal(err)
		}
		if m["in_flight_bytes"] == 0 && m["timeouts_total"] == 3 {
			if m["waits_total"] < 1 || m["wait_seconds_total"] <= 0 || m["budget_bytes"] != budget {
				t.Errorf("metrics %v: want a wait, and the budget %d", m, budget)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics %v: want 0 bytes in flight and 3 timeouts", m)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got := logs.Lines("level=WARN", "not read within the send timeout", "sendTimeout=1s"); len(got) != 3 {
		t.Errorf("want a WARN for each of the 3 stuck clients, got %q in:\n%s", got, logs)
	}
	stop()
	<-sampled
	mu.Lock()
	defer mu.Unlock()
	if samples < 10 || maxInFlight > budget || maxInFlight < float64(size) {
		t.Errorf("bytes in flight peaked at %.0f over %d samples; want at least one assignment (%d) and at most the budget (%d)", maxInFlight, samples, size, budget)
	}
}
