package resolver_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/resolver"
)

// logRecorder is a slog.Handler that keeps every record's level and
// message.
type logRecorder struct {
	mu   sync.Mutex
	recs []string // "LEVEL message"
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *logRecorder) WithGroup(string) slog.Handler            { return r }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec.Level.String()+" "+rec.Message)
	return nil
}

// count returns how many records at level mention the control plane.
func (r *logRecorder) count(level string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, s := range r.recs {
		if strings.HasPrefix(s, level+" ") && strings.Contains(s, "control plane") {
			n++
		}
	}
	return n
}

func (r *logRecorder) all() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.recs, "\n")
}

// The client says once that it lost the control plane and once that it is
// back, however many times it tries in between, and Connection reports
// the same.
func TestConnectionState(t *testing.T) {
	dir := writeReviews(t)
	cp := meshtest.StartControlPlane(t, dir)
	addr := cp.XDSAddr()
	rec := &logRecorder{}
	c := newClient(t, nodeID(t), []string{addr}, trusted(t, cp), resolver.WithLogger(slog.New(rec)))
	watch(t, c.WatchRouteConfig, reviewsTarget).value(t, 5*time.Second)
	if conn := c.Connection(); !conn.Up || conn.Server != addr || conn.Again {
		t.Fatalf("connected client: Connection() = %+v, want Up from %s", conn, addr)
	}

	cp.Close()
	meshtest.WaitUntil(t, 5*time.Second, "the client to see the control plane gone", func() bool { return !c.Connection().Up })
	lost := c.Connection()
	if lost.Err == nil || lost.Server != addr {
		t.Errorf("after the loss: Connection() = %+v, want the server and why", lost)
	}
	meshtest.WaitUntil(t, 5*time.Second, "three failed attempts to reconnect", func() bool { return rec.count("DEBUG") >= 3 })

	meshtest.StartControlPlane(t, dir, controlplane.WithXDSAddress(addr), controlplane.WithWarmup(0))
	meshtest.WaitUntil(t, 10*time.Second, "the client to be back", func() bool { return c.Connection().Up })
	if back := c.Connection(); !back.Since.After(lost.Since) || back.Err != nil || !back.Again {
		t.Errorf("back: Connection() = %+v, want Up again since after %v", back, lost.Since)
	}
	if w, i := rec.count("WARN"), rec.count("INFO"); w != 1 || i != 2 {
		t.Errorf("logged %d WARN and %d INFO lines about the control plane, want 1 (lost) and 2 (connected, back):\n%s", w, i, rec.all())
	}
}
