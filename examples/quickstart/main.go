// Command quickstart runs a whole mesh in one process: a control plane, a
// gRPC service (three greeter instances of two versions), a plain net/http
// service (two hello instances of two versions) and a client of both. It
// shifts traffic 90/10 and then 50/50 by rewriting the VirtualService
// file, as an operator would, and prints the split it observes at each
// step, over gRPC and over HTTP. It exits 0 when every observed split is
// within 4 points of the configured one. At the end it prints the client's
// requests as its Istio metrics counted them (its /metrics admin page).
//
//	go run ./examples/quickstart
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/telemetry"
)

// The tokens that authenticate the workloads to the control plane's CA. A
// real deployment keeps them out of the code: MESHLET_CA_TOKEN and the
// control plane's --ca-tokens-file.
const (
	greeterToken = "quickstart-greeter-token"
	helloToken   = "quickstart-hello-token"
	clientToken  = "quickstart-client-token"
)

// routeType is the xDS type URL of RouteConfiguration, as /debug/config
// keys it.
const routeType = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

// destinationRule and virtualService are written for each service, the
// gRPC greeter and the HTTP hello, with %[1]s the service's name.
const destinationRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: %[1]s
spec:
  host: %[1]s
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`

const virtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %[1]s
spec:
  hosts:
  - %[1]s
  http:
  - route:
    - destination:
        host: %[1]s
        subset: v1
      weight: %[2]d
    - destination:
        host: %[1]s
        subset: v2
      weight: %[3]d
`

// routing returns the rules of both services for a v1/v2 split.
func routing(v1, v2 int) (rules, routes string) {
	return fmt.Sprintf(destinationRule, "greeter") + "---\n" + fmt.Sprintf(destinationRule, "hello"),
		fmt.Sprintf(virtualService, "greeter", v1, v2) + "---\n" + fmt.Sprintf(virtualService, "hello", v1, v2)
}

func main() {
	calls := flag.Int("calls", 2000, "RPCs to count at each step")
	verbose := flag.Bool("v", false, "show the control plane's and the library's logs")
	flag.Parse()
	if err := run(*calls, *verbose); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

func run(calls int, verbose bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}

	dir, err := os.MkdirTemp("", "meshlet-quickstart-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	rules, routes := routing(100, 0)
	if err := writeFile(dir, "destinationrules.yaml", rules); err != nil {
		return err
	}
	if err := writeFile(dir, "virtualservices.yaml", routes); err != nil {
		return err
	}

	// The control plane is also the mesh's CA: each workload proves who it
	// is with its token and gets a SPIFFE identity; calls between them are
	// mTLS.
	// The demo keeps its CA root with its config, so that it leaves
	// nothing behind; a real control plane keeps it in its state
	// directory, so that a restart keeps trust.
	stateDir, err := os.MkdirTemp("", "meshlet-quickstart-state-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(stateDir)
	cp, err := controlplane.Start(ctx,
		controlplane.WithConfigDir(dir),
		controlplane.WithStateDir(stateDir),
		controlplane.WithCAToken(greeterToken, controlplane.Identity{Namespace: "default", ServiceAccount: "greeter"}),
		controlplane.WithCAToken(helloToken, controlplane.Identity{Namespace: "default", ServiceAccount: "hello"}),
		controlplane.WithCAToken(clientToken, controlplane.Identity{Namespace: "default", ServiceAccount: "quickstart"}),
		controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress("127.0.0.1:0"),
		controlplane.WithLogger(log))
	if err != nil {
		return err
	}
	defer cp.Close()
	fmt.Printf("control plane: xDS on %s, admin on http://%s/debug/config\n", cp.XDSAddr(), cp.AdminAddr())
	fmt.Printf("config: %s\n", dir)

	// Three instances of the greeter service: two of v1, one of v2. In
	// production each is its own process; here they share one.
	for _, version := range []string{"v1", "v1", "v2"} {
		stop, addr, err := startGreeter(ctx, cp.XDSAddr(), version, log)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Printf("greeter %s serving on %s\n", version, addr)
	}
	// Two instances of the hello service, plain net/http.
	for _, version := range []string{"v1", "v2"} {
		stop, addr, err := startHello(ctx, cp.XDSAddr(), version, log)
		if err != nil {
			return err
		}
		defer stop()
		fmt.Printf("hello %s serving HTTP on %s\n", version, addr)
	}

	// Each instance registers, gets its server config from the control
	// plane, and enters callers' endpoints once it serves.
	if err := waitRegistered(ctx, cp, 5); err != nil {
		return err
	}

	// The client's telemetry: Istio's metrics (OTEL_* may add tracing),
	// served with its admin pages on a loopback port.
	tel, err := telemetry.New(ctx)
	if err != nil {
		return err
	}
	defer tel.Shutdown(context.Background())
	client, err := mesh.New(ctx, mesh.WithService("quickstart"), mesh.WithControlPlane(cp.XDSAddr()),
		mesh.WithCAToken(clientToken), mesh.WithLogger(log),
		mesh.WithTelemetry(tel), mesh.WithAdminAddress("127.0.0.1:0"))
	if err != nil {
		return err
	}
	defer client.Close()
	fmt.Printf("client: admin pages on http://%s/ (metrics at /metrics)\n", client.AdminAddr())
	cc, err := client.Dial("greeter:50051")
	if err != nil {
		return err
	}
	defer cc.Close()
	greeterClient := greeterpb.NewGreeterClient(cc)
	httpClient, err := client.HTTPClient(ctx)
	if err != nil {
		return err
	}

	ok := true
	for _, step := range []struct{ v1, v2 int }{{90, 10}, {50, 50}} {
		fmt.Printf("\nrewriting %s: v1 %d%%, v2 %d%%\n", "virtualservices.yaml", step.v1, step.v2)
		before := cp.Dump().XDS[routeType].Version
		_, routes := routing(step.v1, step.v2)
		if err := writeFile(dir, "virtualservices.yaml", routes); err != nil {
			return err
		}
		took, err := waitForRoute(ctx, cp, greeterClient, before)
		if err != nil {
			return err
		}
		fmt.Printf("  config served and acknowledged by every client in %v\n", took.Round(time.Millisecond))
		for _, leg := range []struct {
			what  string
			count func() (map[string]int, int)
		}{
			{"gRPC calls to greeter", func() (map[string]int, int) { return count(ctx, greeterClient, calls) }},
			{"HTTP requests to hello", func() (map[string]int, int) { return countHTTP(ctx, httpClient, calls) }},
		} {
			counts, failed := leg.count()
			v1 := 100 * float64(counts["v1"]) / float64(calls-failed)
			v2 := 100 * float64(counts["v2"]) / float64(calls-failed)
			fmt.Printf("  observed over %d %s: v1 %.1f%%, v2 %.1f%% (%d failed)\n", calls, leg.what, v1, v2, failed)
			if failed > 0 || math.Abs(v1-float64(step.v1)) > 4 {
				fmt.Printf("  NOT within 4 points of %d/%d\n", step.v1, step.v2)
				ok = false
			}
		}
	}
	if err := printRequestMetrics(ctx, client.AdminAddr()); err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("an observed split was off")
	}
	fmt.Println("\nok: every observed split is within 4 points of the config")
	return nil
}

// printRequestMetrics prints the client's istio_requests_total from its
// admin page, summed by destination, version (the subset routed to),
// protocol and code.
func printRequestMetrics(ctx context.Context, admin string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+admin+"/metrics", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("quickstart: %s/metrics: %s", admin, resp.Status)
	}
	sums := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "istio_requests_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(line, "} ")
		if !ok {
			continue
		}
		l := map[string]string{}
		for _, m := range labelRE.FindAllStringSubmatch(labels, -1) {
			l[m[1]] = m[2]
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil || l["reporter"] != "source" {
			continue
		}
		code := l["response_code"]
		if l["request_protocol"] == "grpc" {
			code = "grpc " + l["grpc_response_status"]
		}
		sums[fmt.Sprintf("%-8s %-3s %-5s %s", l["destination_service_name"], l["destination_version"], l["request_protocol"], code)] += v
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fmt.Println("\nthe client's istio_requests_total (reporter=source), by destination, version, protocol and code:")
	for _, k := range slices.Sorted(maps.Keys(sums)) {
		fmt.Printf("  %s  %.0f\n", k, sums[k])
	}
	return nil
}

// labelRE matches one label of a Prometheus text line.
var labelRE = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// waitForRoute waits until the control plane has read the edited file and
// every client has acknowledged it. The first call also waits for the
// client's first config.
func waitForRoute(ctx context.Context, cp *controlplane.Server, c greeterpb.GreeterClient, before string) (time.Duration, error) {
	start := time.Now()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for cp.Dump().XDS[routeType].Version == before {
		select {
		case <-wctx.Done():
			return 0, fmt.Errorf("the control plane did not pick up the edit: %w", wctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	if _, err := c.SayHello(wctx, &greeterpb.HelloRequest{Name: "warm-up"}, grpc.WaitForReady(true)); err != nil {
		return 0, err
	}
	if err := cp.WaitSynced(wctx); err != nil {
		return 0, err
	}
	return time.Since(start), nil
}

// waitRegistered waits until n instances serve, as the control plane sees
// them.
func waitRegistered(ctx context.Context, cp *controlplane.Server, n int) error {
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		serving := 0
		for _, in := range cp.Dump().Instances {
			if in.State == "SERVING" {
				serving++
			}
		}
		if serving == n {
			return nil
		}
		select {
		case <-wctx.Done():
			return fmt.Errorf("%d of %d instances serving: %w", serving, n, wctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func count(ctx context.Context, c greeterpb.GreeterClient, n int) (map[string]int, int) {
	counts := map[string]int{}
	failed := 0
	for range n {
		r, err := c.SayHello(ctx, &greeterpb.HelloRequest{Name: "quickstart"})
		if err != nil {
			failed++
			continue
		}
		counts[r.GetVersion()]++
	}
	return counts, failed
}

// countHTTP makes n requests to the hello service and counts the versions
// that answered.
func countHTTP(ctx context.Context, c *http.Client, n int) (map[string]int, int) {
	counts := map[string]int{}
	failed := 0
	for range n {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://hello:8080/", nil)
		if err != nil {
			failed++
			continue
		}
		resp, err := c.Do(req)
		if err != nil {
			failed++
			continue
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			failed++
			continue
		}
		counts[string(body)]++
	}
	return counts, failed
}

// startHello starts an instance of the hello service: a plain http.Handler
// that says its version, served by the mesh's HTTP server.
func startHello(ctx context.Context, cpAddr, version string, log *slog.Logger) (stop func(), addr string, err error) {
	m, err := mesh.New(ctx,
		mesh.WithService("hello"),
		mesh.WithLabels(map[string]string{"version": version}),
		mesh.WithControlPlane(cpAddr),
		mesh.WithCAToken(helloToken),
		mesh.WithLogger(log))
	if err != nil {
		return nil, "", err
	}
	srv, err := m.NewHTTPServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, version)
	}), mesh.WithServicePort(8080))
	if err != nil {
		m.Close()
		return nil, "", err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.Close()
		return nil, "", err
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	return func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		<-done
		m.Close()
	}, lis.Addr().String(), nil
}

func startGreeter(ctx context.Context, cpAddr, version string, log *slog.Logger) (stop func(), addr string, err error) {
	m, err := mesh.New(ctx,
		mesh.WithService("greeter"),
		mesh.WithLabels(map[string]string{"version": version}),
		mesh.WithControlPlane(cpAddr),
		mesh.WithCAToken(greeterToken),
		mesh.WithLogger(log))
	if err != nil {
		return nil, "", err
	}
	srv, err := m.NewGRPCServer(mesh.WithServicePort(50051))
	if err != nil {
		m.Close()
		return nil, "", err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		m.Close()
		return nil, "", err
	}
	greeterpb.RegisterGreeterServer(srv, &greeter.Server{Version: version, Instance: lis.Addr().String()})
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	return func() {
		srv.GracefulStop()
		<-done
		m.Close()
	}, lis.Addr().String(), nil
}

func writeFile(dir, name, content string) error {
	tmp := filepath.Join(dir, "."+name+".tmp")
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, filepath.Join(dir, name))
}
