package mesh_test

import (
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
)

// adminRule is the greeter's DestinationRule for the admin test: a
// breaker that opens after 3 failures in a row and stays open long
// enough to be seen, outlier detection that ejects an endpoint after 2
// 5xx (at most half of them), and connection-pool limits.
const adminRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
  annotations:
    meshlet.io/circuit-breaker: consecutiveErrors=3,openFor=1m
spec:
  host: greeter
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 10
      http:
        http2MaxRequests: 50
    outlierDetection:
      consecutive5xxErrors: 2
      interval: 1s
      baseEjectionTime: 1m
      maxEjectionPercent: 50
`

// certRecorder is a counting greeter that also keeps the serial of the
// last caller's certificate.
type certRecorder struct {
	countingHTTP
	mu     sync.Mutex
	serial string
}

func (g *certRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		g.mu.Lock()
		g.serial = hex.EncodeToString(r.TLS.PeerCertificates[0].SerialNumber.Bytes())
		g.mu.Unlock()
	}
	g.countingHTTP.ServeHTTP(w, r)
}

func (g *certRecorder) callerSerial() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.serial
}

// getJSON GETs path from base and decodes its JSON into v.
func getJSON(t *testing.T, base, path string, v any) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %s (%s): %s", path, resp.Status, resp.Header.Get("Content-Type"), body)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

// The JSON of the pages, as much of it as the test reads.
type (
	adminEndpoint struct {
		Address        string    `json:"address"`
		Healthy        bool      `json:"healthy"`
		Ejected        bool      `json:"ejected"`
		EjectedUntil   time.Time `json:"ejectedUntil"`
		EjectReason    string    `json:"ejectReason"`
		ActiveRequests *int64    `json:"activeRequests"`
	}
	adminCluster struct {
		Name      string          `json:"name"`
		Problem   string          `json:"problem"`
		Hosts     []string        `json:"hosts"`
		LBPolicy  string          `json:"lbPolicy"`
		Endpoints []adminEndpoint `json:"endpoints"`
		Ejections uint64          `json:"ejections"`
		Breaker   *struct {
			State                     string    `json:"state"`
			ConsecutiveFailuresToOpen uint32    `json:"consecutiveFailuresToOpen"`
			OpenFor                   string    `json:"openFor"`
			Opens                     uint64    `json:"opens"`
			OpenUntil                 time.Time `json:"openUntil"`
		} `json:"breaker"`
		Limits struct {
			MaxRequests    *uint32 `json:"maxRequests"`
			MaxConnections *uint32 `json:"maxConnections"`
			MaxRetries     *uint32 `json:"maxRetries"`
			ActiveRequests *int64  `json:"activeRequests"`
			Connections    int64   `json:"connections"`
		} `json:"limits"`
	}
	adminBucket struct {
		Rate    float64 `json:"rate"`
		Burst   int     `json:"burst"`
		Tokens  float64 `json:"tokens"`
		Allowed uint64  `json:"allowed"`
		Limited uint64  `json:"limited"`
	}
	adminLimits struct {
		Servers []struct {
			Protocol  string `json:"protocol"`
			Listeners []struct {
				Listener   string `json:"listener"`
				Address    string `json:"address"`
				RateLimits []struct {
					Filter      string        `json:"filter"`
					Descriptors []adminBucket `json:"descriptors"`
					Default     *adminBucket  `json:"default"`
				} `json:"rateLimits"`
			} `json:"listeners"`
		} `json:"servers"`
	}
	adminIdentity struct {
		SPIFFEID    string    `json:"spiffeID"`
		Source      string    `json:"source"`
		Serial      string    `json:"serial"`
		NotBefore   time.Time `json:"notBefore"`
		NotAfter    time.Time `json:"notAfter"`
		TrustDomain string    `json:"trustDomain"`
		TrustBundle int       `json:"trustBundleSize"`
	}
	adminTypeStats struct {
		Type      string `json:"type"`
		Version   string `json:"version"`
		Responses uint64 `json:"responses"`
		ACKs      uint64 `json:"acks"`
		NACKs     uint64 `json:"nacks"`
	}
	adminResource struct {
		Type    string         `json:"type"`
		Name    string         `json:"name"`
		Status  string         `json:"status"`
		Version string         `json:"version"`
		Config  map[string]any `json:"config"`
	}
)

const greeterCluster = "outbound|50051||greeter.default.svc.cluster.local"

func clusterOf(t *testing.T, base string) adminCluster {
	t.Helper()
	var page struct {
		Clusters []adminCluster `json:"clusters"`
	}
	getJSON(t, base, "/debug/clusters", &page)
	for _, c := range page.Clusters {
		if c.Name == greeterCluster {
			return c
		}
	}
	t.Fatalf("no cluster %s in /debug/clusters: %+v", greeterCluster, page)
	return adminCluster{}
}

// The admin handler of a client and of a server over real loopback: the
// client's clusters with their endpoints, an endpoint ejected after
// failures and the breaker open; the server's rate-limit tokens going
// down; each identity's real serial and validity; the xDS config ACKed
// with its versions; the connection to the control plane; the build.
func TestAdminHandler(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{
		"rule.yaml":      adminRule,
		"route.yaml":     noRetries,
		"ratelimit.yaml": rateLimit("greeter", "  limit: {requestsPerUnit: 1, unit: hour, burst: 1000}\n"),
	})
	// The greeter's identity comes from files, so that the test knows its
	// certificate; the client's from the built-in CA.
	certFile, keyFile, bundleFile := meshtest.SVIDFiles(t, cp, "default", "greeter")
	src, err := security.NewFileSource(t.Context(), certFile, keyFile, bundleFile)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { src.Close() })
	gm := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, mesh.WithIdentity(src), mesh.WithAdminAddress("127.0.0.1:0"))
	counts := &countingServer{}
	g1, g2 := &certRecorder{countingHTTP: countingHTTP{counts: counts}}, &certRecorder{countingHTTP: countingHTTP{counts: counts}}
	serveHTTPGreeter(t, gm, "v1", g1)
	serveHTTPGreeter(t, gm, "v1", g2)
	waitRegistered(t, cp, 2)
	serverAdmin := "http://" + gm.AdminAddr()

	cm := startMesh(t, cp.XDSAddr(), "client", nil)
	// The handler mounts on any server: here a plain httptest one.
	hs := httptest.NewServer(cm.AdminHandler())
	t.Cleanup(hs.Close)
	clientAdmin := hs.URL
	client := httpClientFor(t, cm)
	call := func() error {
		_, err := httpCall(t.Context(), client, sayHelloPath, "")
		return err
	}
	meshtest.WaitUntil(t, 15*time.Second, "a call to succeed", func() bool { return call() == nil })
	meshtest.WaitUntil(t, 15*time.Second, "both greeters in the client's cluster", func() bool { return len(clusterOf(t, clientAdmin).Endpoints) == 2 })

	t.Run("clusters", func(t *testing.T) {
		c := clusterOf(t, clientAdmin)
		if c.Problem != "" || len(c.Hosts) != 1 || !strings.HasPrefix(c.Hosts[0], "greeter.default.svc.cluster.local:") || c.LBPolicy == "" {
			t.Errorf("cluster %+v: want no problem, the greeter's host, a policy", c)
		}
		for _, e := range c.Endpoints {
			if !e.Healthy || e.Ejected || e.ActiveRequests == nil || *e.ActiveRequests != 0 {
				t.Errorf("endpoint %+v: want healthy, not ejected, 0 active requests", e)
			}
		}
		if b := c.Breaker; b == nil || b.State != "closed" || b.ConsecutiveFailuresToOpen != 3 || b.OpenFor != "1m0s" {
			t.Errorf("breaker %+v: want closed, 3 failures for 1m", b)
		}
		if l := c.Limits; l.MaxRequests == nil || *l.MaxRequests != 50 || l.MaxConnections == nil || *l.MaxConnections != 10 || l.ActiveRequests == nil {
			t.Errorf("limits %+v: want 50 requests, 10 connections", l)
		}
	})

	t.Run("ratelimits", func(t *testing.T) {
		bucket := func() adminBucket {
			var page adminLimits
			getJSON(t, serverAdmin, "/debug/ratelimits", &page)
			var found []adminBucket
			for _, s := range page.Servers {
				for _, l := range s.Listeners {
					for _, rl := range l.RateLimits {
						if s.Protocol == "HTTP" && strings.Contains(rl.Filter, "greeter") {
							found = append(found, rl.Descriptors...)
							if rl.Default != nil {
								found = append(found, *rl.Default)
							}
						}
					}
				}
			}
			if len(found) != 2 { // one bucket per server
				t.Fatalf("found %d rate-limit buckets of the greeter policy, want 2 (one a server): %+v", len(found), page)
			}
			return adminBucket{Tokens: found[0].Tokens + found[1].Tokens, Allowed: found[0].Allowed + found[1].Allowed,
				Burst: found[0].Burst, Rate: found[0].Rate}
		}
		before := bucket()
		if before.Burst != 1000 || math.Abs(before.Rate-1.0/3600) > 1e-9 || before.Allowed == 0 {
			t.Errorf("buckets %+v: want burst 1000, 1/3600 a second, some requests allowed", before)
		}
		const n = 10
		for i := range n {
			if err := call(); err != nil {
				t.Fatalf("call %d: %v", i, err)
			}
		}
		after := bucket()
		// One token an hour refills under 0.01 in the seconds this takes.
		if d := before.Tokens - after.Tokens; math.Abs(d-n) > 0.01 || after.Allowed-before.Allowed != n {
			t.Errorf("after %d calls the tokens went from %.3f to %.3f and allowed from %d to %d; want %d fewer tokens, %d more allowed",
				n, before.Tokens, after.Tokens, before.Allowed, after.Allowed, n, n)
		}
	})

	t.Run("identity", func(t *testing.T) {
		pemBytes, err := os.ReadFile(certFile)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(pemBytes)
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		var id adminIdentity
		getJSON(t, serverAdmin, "/debug/identity", &id)
		want := adminIdentity{
			SPIFFEID: "spiffe://cluster.local/ns/default/sa/greeter", Source: "file",
			Serial:    hex.EncodeToString(cert.SerialNumber.Bytes()),
			NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, TrustDomain: "cluster.local", TrustBundle: 1,
		}
		if !id.NotBefore.Equal(want.NotBefore) || !id.NotAfter.Equal(want.NotAfter) {
			t.Errorf("greeter's validity %v..%v, want the certificate's %v..%v", id.NotBefore, id.NotAfter, want.NotBefore, want.NotAfter)
		}
		id.NotBefore, id.NotAfter = want.NotBefore, want.NotAfter
		if id != want {
			t.Errorf("greeter's identity:\n got %+v\nwant %+v", id, want)
		}

		// The client's, from the built-in CA, is the certificate the
		// greeter saw it call with.
		getJSON(t, clientAdmin, "/debug/identity", &id)
		seen := g1.callerSerial() + g2.callerSerial()
		if id.Source != "ca" || id.SPIFFEID != "spiffe://cluster.local/ns/default/sa/client" || id.Serial == "" || !strings.Contains(seen, id.Serial) ||
			!id.NotAfter.After(time.Now()) || !id.NotBefore.Before(time.Now()) {
			t.Errorf("client's identity %+v: want from the CA, the serial the greeter saw (%q), valid now", id, seen)
		}
	})

	t.Run("config and xds", func(t *testing.T) {
		var cfg struct {
			Types     []adminTypeStats `json:"types"`
			Resources []adminResource  `json:"resources"`
		}
		getJSON(t, clientAdmin, "/debug/config", &cfg)
		seen := map[string]bool{}
		for _, r := range cfg.Resources {
			seen[r.Type] = true
			if r.Status != "ACKED" || r.Version == "" || r.Config["@type"] == nil {
				t.Errorf("resource %s %s: status %s, version %q, config %v; want ACKED with its version and config", r.Type, r.Name, r.Status, r.Version, r.Config)
			}
			if r.Type == "Cluster" && r.Name == greeterCluster && r.Config["outlierDetection"] == nil {
				t.Errorf("the greeter's Cluster has no outlierDetection in its config: %v", r.Config)
			}
		}
		for _, typ := range []string{"Listener", "RouteConfiguration", "Cluster", "ClusterLoadAssignment"} {
			if !seen[typ] {
				t.Errorf("no %s in /debug/config", typ)
			}
		}
		for _, s := range cfg.Types {
			if s.ACKs == 0 || s.NACKs != 0 || s.Responses != s.ACKs || s.Version == "" {
				t.Errorf("type stats %+v: want ACKs, no NACKs, a version", s)
			}
		}
		var x struct {
			Up           bool             `json:"up"`
			Server       string           `json:"server"`
			ControlPlane string           `json:"controlPlane"`
			Connects     uint64           `json:"connects"`
			Types        []adminTypeStats `json:"types"`
		}
		getJSON(t, clientAdmin, "/debug/xds", &x)
		if !x.Up || x.Server != cp.XDSAddr() || x.ControlPlane != cp.XDSAddr() || x.Connects != 1 || len(x.Types) != 4 {
			t.Errorf("/debug/xds = %+v, want up, connected once to %s, 4 types", x, cp.XDSAddr())
		}
	})

	t.Run("build, health and index", func(t *testing.T) {
		var b struct {
			GoVersion string `json:"goVersion"`
		}
		getJSON(t, clientAdmin, "/debug/build", &b)
		if !strings.HasPrefix(b.GoVersion, "go") {
			t.Errorf("goVersion %q", b.GoVersion)
		}
		for path, want := range map[string]string{"/healthz": "ok", "/": "/debug/clusters"} {
			resp, err := http.Get(clientAdmin + path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Errorf("GET %s: %s %q, want 200 with %q", path, resp.Status, body, want)
			}
		}
	})

	t.Run("ejection and breaker", func(t *testing.T) {
		counts.failing.Store(true)
		// Round robin over the two: each fails twice within 4 calls. The
		// first is ejected; the second may not be (at most 50%). The
		// cluster has 4 failures in a row: its breaker opens at the 3rd.
		failed := 0
		for range 4 {
			if call() != nil {
				failed++
			}
		}
		if failed != 4 {
			t.Fatalf("%d of 4 calls failed, want all", failed)
		}
		c := clusterOf(t, clientAdmin)
		ejected := 0
		for _, e := range c.Endpoints {
			if e.Ejected {
				ejected++
				if e.EjectReason != "consecutive_5xx" || e.EjectedUntil.Before(time.Now().Add(50*time.Second)) {
					t.Errorf("ejected endpoint %+v: want consecutive_5xx, for about a minute", e)
				}
			}
		}
		if ejected != 1 || c.Ejections != 1 {
			t.Errorf("%d endpoints ejected, %d ejections; want 1 (maxEjectionPercent 50): %+v", ejected, c.Ejections, c.Endpoints)
		}
		if b := c.Breaker; b == nil || b.State != "open" || b.Opens != 1 || b.OpenUntil.Before(time.Now().Add(50*time.Second)) {
			t.Errorf("breaker %+v: want open, once, for about a minute", b)
		}
		arrived := counts.arrived.Load()
		if err := call(); err == nil || !strings.Contains(err.Error(), "circuit breaker open") {
			t.Errorf("a call with the breaker open: %v, want refused by it", err)
		}
		if counts.arrived.Load() != arrived {
			t.Errorf("a call reached a greeter with the breaker open")
		}
	})
}

// WithAdminAddress fails New with an address it cannot listen on, and
// the admin listener closes with the mesh.
func TestAdminAddress(t *testing.T) {
	cp, _ := startControlPlane(t, nil)
	m := startMesh(t, cp.XDSAddr(), "client", nil, mesh.WithAdminAddress("127.0.0.1:0"))
	addr := m.AdminAddr()
	if _, err := joinMesh(t.Context(), cp.XDSAddr(), "other", nil, mesh.WithAdminAddress(addr)); err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "WithAdminAddress") {
		t.Errorf("New with a taken admin address: %v, want an error naming it and the option", err)
	}
	resp, err := http.Get("http://" + addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	m.Close()
	if resp, err := http.Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("the admin address still answers %s after Close", resp.Status)
	}
	if m2 := startMesh(t, cp.XDSAddr(), "plain", nil); m2.AdminAddr() != "" {
		t.Errorf("AdminAddr = %q without WithAdminAddress", m2.AdminAddr())
	}
}

// A process that calls only over gRPC-Go's xDS client (WithGRPCGoXDS)
// still says, through the mesh's logger, once at WARN that it lost the
// control plane and once at INFO that it is back: meshlet's own xDS
// stream, which the mesh keeps for its servers and policy, says it.
func TestGRPCGoXDSCallerLogsControlPlaneOutage(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)})
	cp := meshtest.StartControlPlane(t, dir)
	addr := cp.XDSAddr()
	startGreeter(t, addr, "v1")
	rec := &logRecorder{}
	m := startMesh(t, addr, "client", nil, mesh.WithGRPCGoXDS(), mesh.WithLogger(slog.New(rec)), mesh.WithAdminAddress("127.0.0.1:0"))
	client := dialGreeter(t, m)
	waitServing(t, client, "v1")

	const lost, back = "lost the connection to the control plane", "connection to the control plane is back"
	cp.Close()
	meshtest.WaitUntil(t, 10*time.Second, "the caller to say it lost the control plane", func() bool { return rec.count("WARN", lost) > 0 })
	var x struct {
		Up          bool   `json:"up"`
		LastError   string `json:"lastError"`
		Disconnects uint64 `json:"disconnects"`
	}
	getJSON(t, "http://"+m.AdminAddr(), "/debug/xds", &x)
	if x.Up || x.Disconnects != 1 || x.LastError == "" {
		t.Errorf("/debug/xds while the control plane is down: %+v, want down, one disconnect, the error", x)
	}
	meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(0))
	meshtest.WaitUntil(t, 15*time.Second, "the caller to say the control plane is back", func() bool { return rec.count("INFO", back) > 0 })
	waitCall(t, client, "a call after the outage")
	if w, i := rec.count("WARN", lost), rec.count("INFO", back); w != 1 || i != 1 {
		t.Errorf("logged %q %d times and %q %d times, want once each:\n%s", lost, w, back, i, rec)
	}
	var again struct {
		Up         bool   `json:"up"`
		Reconnects uint64 `json:"reconnects"`
	}
	getJSON(t, "http://"+m.AdminAddr(), "/debug/xds", &again)
	if !again.Up || again.Reconnects != 1 {
		t.Errorf("/debug/xds after the outage: %+v, want up, reconnected once", again)
	}
}
