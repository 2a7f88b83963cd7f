package mesh

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

// adminEndpoints are the admin handler's pages, in the order the index
// lists them.
var adminEndpoints = []struct{ path, what string }{
	{"/healthz", "200 while the mesh is open"},
	{"/debug/config", "every xDS resource held: status (ACKED, NACKED...), version, last NACK, config as protojson"},
	{"/debug/clusters", "clusters called: endpoints (health, ejection, active requests), circuit breaker, limits"},
	{"/debug/identity", "the workload's SPIFFE ID, certificate serial and validity, trust bundle"},
	{"/debug/ratelimits", "the servers' rate-limit buckets and the tokens they hold"},
	{"/debug/xds", "the connection to the control plane; responses, ACKs and NACKs per type"},
	{"/debug/build", "module versions and Go version"},
}

// adminMetrics is the telemetry's Prometheus text, listed and served
// with WithTelemetry only.
var adminMetrics = struct{ path, what string }{"/metrics", "Istio's request metrics and meshlet's (Prometheus text; WithTelemetry)"}

// AdminHandler returns an http.Handler that serves the mesh's state as
// JSON, as Envoy's admin interface and istioctl's debug pages do: the xDS
// config in force, the clusters and endpoints called, the identity, the
// rate limits, the connection to the control plane and the build; with
// WithTelemetry, also the telemetry's metrics at /metrics (Prometheus
// text). Its index, at "/", lists the pages; docs/admin.md describes
// them.
//
// It exposes the process's internals (config, peers' addresses, callers'
// identities in rate-limit keys) and has no authentication of its own:
// mount it only on a loopback or otherwise private admin port, never on a
// server the mesh's callers reach. WithAdminAddress serves it on a
// listener of its own. It is safe for concurrent use, and reading a page
// does not change any state (no token is taken, no ejection ended).
func (m *Mesh) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", m.adminIndex)
	mux.HandleFunc("GET /healthz", m.adminHealthz)
	mux.HandleFunc("GET /debug/config", m.withXDS(func(rc *resolver.Client, _ *dataplane.Core) any {
		return adminConfig{Types: rc.Stats(), Resources: rc.Dump()}
	}))
	mux.HandleFunc("GET /debug/clusters", m.withXDS(func(_ *resolver.Client, core *dataplane.Core) any {
		return adminClusters{Clusters: core.Snapshot()}
	}))
	mux.HandleFunc("GET /debug/xds", m.withXDS(func(rc *resolver.Client, _ *dataplane.Core) any {
		return xdsState(rc, m.opts.controlPlane, m.nodeID)
	}))
	mux.HandleFunc("GET /debug/ratelimits", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, adminRateLimits{Servers: m.rateLimits(time.Now())})
	})
	mux.HandleFunc("GET /debug/identity", func(w http.ResponseWriter, _ *http.Request) {
		id, err := identityState(m.identity, m.spiffeID.TrustDomain().Name())
		if err != nil {
			writeJSON(w, http.StatusServiceUnavailable, adminError{Error: err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, id)
	})
	mux.HandleFunc("GET /debug/build", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, buildState())
	})
	if t := m.opts.telemetry; t != nil {
		mux.Handle("GET "+adminMetrics.path, t.MetricsHandler())
	}
	return mux
}

func (m *Mesh) adminIndex(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "meshlet admin: service %s.%s, node %s\n\n", m.opts.service, m.opts.namespace, m.nodeID)
	for _, e := range adminEndpoints {
		fmt.Fprintf(w, "%-18s %s\n", e.path, e.what)
	}
	if m.opts.telemetry != nil {
		fmt.Fprintf(w, "%-18s %s\n", adminMetrics.path, adminMetrics.what)
	}
}

func (m *Mesh) adminHealthz(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if closed {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "closed")
		return
	}
	fmt.Fprintln(w, "ok")
}

// withXDS serves what page returns once meshlet's xDS client is
// connected; before then, 503 saying so. It never waits for it.
func (m *Mesh) withXDS(page func(*resolver.Client, *dataplane.Core) any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		m.startXDSClient()
		select {
		case <-m.xds.ready:
		default:
			writeJSON(w, http.StatusServiceUnavailable, adminError{Error: fmt.Sprintf("mesh: the xDS client has not reached the control plane at %s yet", m.opts.controlPlane)})
			return
		}
		if m.xds.err != nil {
			writeJSON(w, http.StatusServiceUnavailable, adminError{Error: "mesh: xds client: " + m.xds.err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, page(m.xds.rc, m.xds.core))
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(fmt.Sprintf(`{"error": %q}`, "mesh: admin: "+err.Error()))
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}

type adminError struct {
	Error string `json:"error"`
}

// adminConfig is /debug/config. The resources are shown as the control
// plane sent them (protojson), the form of Envoy's config_dump and of the
// control plane's own dump, so that the two can be compared.
type adminConfig struct {
	Types     []resolver.TypeStats `json:"types"`
	Resources []resolver.Resource  `json:"resources"`
}

type adminClusters struct {
	Clusters []dataplane.ClusterSnapshot `json:"clusters"`
}

// adminXDS is /debug/xds.
type adminXDS struct {
	ControlPlane string `json:"controlPlane"`
	NodeID       string `json:"nodeID"`
	// Up, Server, Since and LastError are resolver.Client.Connection's.
	Up        bool      `json:"up"`
	Server    string    `json:"server"`
	Since     time.Time `json:"since"`
	LastError string    `json:"lastError,omitempty"`
	// Connects counts connections (the first and every reconnection),
	// Reconnects those after the first, Disconnects the losses.
	Connects    uint64               `json:"connects"`
	Reconnects  uint64               `json:"reconnects"`
	Disconnects uint64               `json:"disconnects"`
	Types       []resolver.TypeStats `json:"types"`
}

func xdsState(rc *resolver.Client, cp, node string) adminXDS {
	c := rc.Connection()
	up, down := rc.Connects()
	x := adminXDS{
		ControlPlane: cp, NodeID: node, Up: c.Up, Server: c.Server, Since: c.Since,
		Connects: up, Reconnects: max(up, 1) - 1, Disconnects: down, Types: rc.Stats(),
	}
	if c.Err != nil {
		x.LastError = c.Err.Error()
	}
	return x
}

// adminIdentity is /debug/identity.
type adminIdentity struct {
	SPIFFEID string `json:"spiffeID"`
	// Source is where the identity comes from: "ca" (the control plane's
	// built-in CA), "file", "workloadapi" (SPIRE), or the Go type of a
	// source given with WithIdentity.
	Source string `json:"source"`
	// Serial is the leaf certificate's serial number in hex.
	Serial    string    `json:"serial"`
	NotBefore time.Time `json:"notBefore"`
	NotAfter  time.Time `json:"notAfter"`
	// ExpiresIn is the time left, rounded to the second.
	ExpiresIn string `json:"expiresIn"`
	// Chain is the number of certificates sent with the leaf's.
	Chain int `json:"chain"`
	// TrustDomain, and the number of its root certificates the workload
	// trusts.
	TrustDomain string `json:"trustDomain"`
	TrustBundle int    `json:"trustBundleSize"`
}

func identityState(src security.Source, td string) (adminIdentity, error) {
	if src == nil {
		return adminIdentity{}, errors.New("mesh: no identity yet")
	}
	svid, err := src.GetX509SVID()
	if err != nil {
		return adminIdentity{}, fmt.Errorf("mesh: identity: %w", err)
	}
	leaf := svid.Certificates[0]
	id := adminIdentity{
		SPIFFEID: svid.ID.String(), Source: sourceKind(src),
		Serial:    hex.EncodeToString(leaf.SerialNumber.Bytes()),
		NotBefore: leaf.NotBefore, NotAfter: leaf.NotAfter,
		ExpiresIn: time.Until(leaf.NotAfter).Round(time.Second).String(),
		Chain:     len(svid.Certificates) - 1, TrustDomain: svid.ID.TrustDomain().Name(),
	}
	if b, err := src.GetX509BundleForTrustDomain(svid.ID.TrustDomain()); err == nil {
		id.TrustBundle = len(b.X509Authorities())
	}
	return id, nil
}

func sourceKind(src security.Source) string {
	switch src.(type) {
	case *security.CASource:
		return "ca"
	case *security.FileSource:
		return "file"
	case *security.WorkloadAPISource:
		return "workloadapi"
	}
	return fmt.Sprintf("%T", src)
}

// adminRateLimits is /debug/ratelimits.
type adminRateLimits struct {
	Servers []adminServerLimits `json:"servers"`
}

type adminServerLimits struct {
	// Protocol is GRPC or HTTP.
	Protocol  string                      `json:"protocol"`
	Listeners []dataplane.InboundSnapshot `json:"listeners"`
}

// rateLimits gathers the rate limits of the mesh's servers: meshlet's
// gRPC and HTTP servers (gRPC-Go's xDS server does not enforce them).
func (m *Mesh) rateLimits(now time.Time) []adminServerLimits {
	m.mu.Lock()
	servers := make([]stopper, 0, len(m.servers))
	for s := range m.servers {
		servers = append(servers, s)
	}
	m.mu.Unlock()
	out := []adminServerLimits{}
	for _, s := range servers {
		var set *dataplane.InboundSet
		var protocol string
		switch s := s.(type) {
		case *HTTPServer:
			set, protocol = &s.inbound, s.protocol
		case *GRPCServer:
			if n, ok := s.srv.(*nativeGRPC); ok {
				set, protocol = &n.inbound, s.protocol
			}
		}
		if set == nil {
			continue
		}
		if ls := set.Snapshot(now); len(ls) > 0 {
			out = append(out, adminServerLimits{Protocol: protocol, Listeners: ls})
		}
	}
	key := func(s adminServerLimits) string { return s.Protocol + " " + s.Listeners[0].Address }
	slices.SortFunc(out, func(a, b adminServerLimits) int { return strings.Compare(key(a), key(b)) })
	return out
}

// adminBuild is /debug/build.
type adminBuild struct {
	GoVersion string `json:"goVersion"`
	// Main is the program's module, Meshlet meshlet's version in it.
	Main    string `json:"main"`
	Meshlet string `json:"meshlet"`
	// VCS is the version control settings the program was built with.
	VCS  map[string]string `json:"vcs,omitempty"`
	OS   string            `json:"os"`
	Arch string            `json:"arch"`
	Deps map[string]string `json:"deps"`
}

const meshletModule = "github.com/meshlet/meshlet"

var buildOnce = sync.OnceValue(func() adminBuild {
	b := adminBuild{GoVersion: runtime.Version(), OS: runtime.GOOS, Arch: runtime.GOARCH, Deps: map[string]string{}}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.GoVersion = bi.GoVersion
	b.Main = bi.Main.Path + "@" + bi.Main.Version
	if bi.Main.Path == meshletModule {
		b.Meshlet = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Replace != nil {
			d = d.Replace
		}
		switch {
		case d.Path == meshletModule:
			b.Meshlet = d.Version
		case strings.HasPrefix(d.Path, "google.golang.org/grpc"), strings.HasPrefix(d.Path, "github.com/envoyproxy/go-control-plane"),
			strings.HasPrefix(d.Path, "go.opentelemetry.io/otel"), strings.HasPrefix(d.Path, "github.com/spiffe/go-spiffe"):
			b.Deps[d.Path] = d.Version
		}
	}
	for _, s := range bi.Settings {
		if strings.HasPrefix(s.Key, "vcs.") {
			if b.VCS == nil {
				b.VCS = map[string]string{}
			}
			b.VCS[strings.TrimPrefix(s.Key, "vcs.")] = s.Value
		}
	}
	return b
})

func buildState() adminBuild { return buildOnce() }

// serveAdmin serves the admin handler on addr until the mesh closes.
func (m *Mesh) serveAdmin(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mesh: admin address %s: %w (use a free loopback port, such as 127.0.0.1:15000, or leave WithAdminAddress out)", addr, err)
	}
	srv := &http.Server{Handler: m.AdminHandler(), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	m.adminAddr = lis.Addr().String()
	m.log.Info("mesh: admin handler serving", "address", m.adminAddr)
	m.closers = append(m.closers, func() {
		srv.Close()
		<-done
	})
	return nil
}

// AdminAddr returns the address the admin handler serves on, with
// WithAdminAddress; "" without it.
func (m *Mesh) AdminAddr() string { return m.adminAddr }
