package mesh_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
)

// logRecorder is a slog.Handler that keeps every record's level, message
// and attributes.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message key=value ..."
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool {
		line += " " + a.String()
		return true
	})
	r.recs = append(r.recs, line)
	return nil
}

// count returns how many records are at level with text in the message
// or an attribute.
func (r *logRecorder) count(level, text string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.recs {
		if strings.HasPrefix(s, level+" ") && strings.Contains(s, text) {
			n++
		}
	}
	return n
}

func (r *logRecorder) String() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.recs, "\n")
}

// deadAddress returns a loopback address that refuses connections.
func deadAddress(t *testing.T) string {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	lis.Close()
	return addr
}

// mesh.New against a control plane that is not there keeps trying until
// its context ends, and says so at WARN once per few seconds, not once per
// attempt: through the built-in CA, and with an identity of its own.
func TestNewWarnsWhileItRetries(t *testing.T) {
	cp, _ := startControlPlane(t, nil, controlplane.WithCAInsecureDev(true))
	cert, key, bundle := meshtest.SVIDFiles(t, cp, "default", "client")
	for _, tc := range []struct {
		name string
		opts func() []mesh.Option
		warn string // the WARN line's message
	}{
		{"built-in CA", func() []mesh.Option { return nil }, "sign failed; retrying"},
		{"identity files", func() []mesh.Option {
			src, err := security.NewFileSource(t.Context(), cert, key, bundle)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { src.Close() })
			return []mesh.Option{mesh.WithIdentity(src)}
		}, "control plane not reachable yet; retrying"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &logRecorder{}
			// Long enough for four attempts or more (backoff from 100ms).
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			defer cancel()
			addr := deadAddress(t)
			_, err := mesh.New(ctx, append(tc.opts(), mesh.WithService("client"), mesh.WithControlPlane(addr), mesh.WithLogger(slog.New(rec)))...)
			t.Logf("mesh.New: %v", err)
			if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connection refused") {
				t.Errorf("mesh.New = %v, want an error naming %s and the refused connection", err, addr)
			}
			if n := rec.count("WARN", tc.warn); n != 1 {
				t.Errorf("logged %q %d times in 2s, want once:\n%s", tc.warn, n, rec)
			}
		})
	}
}

// A gRPC caller says once, at WARN, that it lost the control plane and
// once, at INFO, that it is back.
func TestGRPCCallerLogsControlPlaneOutage(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)})
	cp := meshtest.StartControlPlane(t, dir)
	addr := cp.XDSAddr()
	startGreeter(t, addr, "v1")
	rec := &logRecorder{}
	client := dialGreeter(t, startMesh(t, addr, "client", nil, mesh.WithLogger(slog.New(rec))))
	waitServing(t, client, "v1")

	const lost, back = "lost the connection to the control plane", "connection to the control plane is back"
	cp.Close()
	meshtest.WaitUntil(t, 10*time.Second, "the caller to say it lost the control plane", func() bool { return rec.count("WARN", lost) > 0 })
	meshtest.WaitUntil(t, 10*time.Second, "three attempts to reconnect", func() bool { return rec.count("DEBUG", "stream to control plane failed") >= 3 })
	meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(0))
	meshtest.WaitUntil(t, 15*time.Second, "the caller to say the control plane is back", func() bool { return rec.count("INFO", back) > 0 })
	waitCall(t, client, "a call after the outage")
	if w, i := rec.count("WARN", lost), rec.count("INFO", back); w != 1 || i != 1 {
		t.Errorf("logged %q %d times and %q %d times, want once each:\n%s", lost, w, back, i, rec)
	}
}
