package mesh_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// adsStreams returns how many ADS streams the control plane holds for
// nodeID, per its /debug/clients, and what each asked for, to log.
func adsStreams(t *testing.T, cp *controlplane.Server, nodeID string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + cp.AdminAddr() + "/debug/clients")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var clients []struct {
		StreamID int64 `json:"streamID"`
		NodeID   string
		Types    map[string]struct{ Requested []string }
	}
	if err := json.NewDecoder(resp.Body).Decode(&clients); err != nil {
		t.Fatalf("decode /debug/clients: %v", err)
	}
	n, desc := 0, ""
	for _, c := range clients {
		if c.NodeID != nodeID {
			continue
		}
		n++
		desc += fmt.Sprintf("\n  stream %d:", c.StreamID)
		for typ, ts := range c.Types {
			desc += fmt.Sprintf(" %s%v", typ, ts.Requested)
		}
	}
	return n, desc
}

// One process that is a client and a server over both transports holds
// one ADS stream: its gRPC and HTTP clients and servers share meshlet's
// own xDS client.
func TestOneADSStreamPerProcess(t *testing.T) {
	const httpPort = greeterPort + 1
	cp, _ := startControlPlane(t, nil)
	// The process calls itself, over each transport, so that it is the
	// client and the server of both.
	m := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"})
	serveGreeter(t, m, "v1", &grpcGreeter{})
	serveHTTPGreeterOn(t, m, listen(t, "127.0.0.1:0"), "v1", nil, mesh.WithServicePort(httpPort))
	waitRegistered(t, cp, 2)

	waitCall(t, dialGreeter(t, m), "a gRPC call to the process's own server")
	hc := httpClientFor(t, m)
	meshtest.WaitUntil(t, 15*time.Second, "an HTTP call to the process's own server", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d/", httpPort), nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	if n, desc := adsStreams(t, cp, m.NodeID()); n != 1 {
		t.Errorf("a process with a gRPC and an HTTP client and server holds %d ADS streams, want 1:%s", n, desc)
	}
}

// Contrast: through gRPC-Go's own xDS client each ClientConn opens a
// stream of its own, besides meshlet's, and the count above sees them.
func TestGRPCGoXDSStreamPerClientConn(t *testing.T) {
	cp, _ := startControlPlane(t, nil)
	startGreeterWith(t, cp.XDSAddr(), "v1", &grpcGreeter{})
	waitRegistered(t, cp, 1)
	m := startMesh(t, cp.XDSAddr(), "client", nil, mesh.WithGRPCGoXDS())

	counts := make([]int, 0, 2)
	for i := range 2 {
		c := dialGreeter(t, m)
		waitCall(t, c, fmt.Sprintf("a call on ClientConn %d", i+1))
		n, desc := adsStreams(t, cp, m.NodeID())
		t.Logf("with %d ClientConns through gRPC-Go's xDS client: %d ADS streams:%s", i+1, n, desc)
		counts = append(counts, n)
	}
	if counts[0] <= 1 {
		t.Errorf("one ClientConn through gRPC-Go's xDS client: %d ADS streams for the process, want more than 1", counts[0])
	}
	if counts[1] <= counts[0] {
		t.Errorf("a second ClientConn: %d ADS streams, want more than the first's %d", counts[1], counts[0])
	}
}
