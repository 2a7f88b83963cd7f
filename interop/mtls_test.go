package interop_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

// strictConfig makes mTLS STRICT for the whole mesh.
const strictConfig = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
`

// TestPythonStrictMTLS: a Python client whose SVID files meshctl agent
// keeps current from meshlet's CA, and whose bootstrap meshctl bootstrap
// wrote, calls a meshlet Go server under STRICT mTLS with its own
// identity, through rotations of a 4s SVID, with no failed call. A Python
// client without an SVID gets nothing from that server.
func TestPythonStrictMTLS(t *testing.T) {
	need(t, pythonLang)
	const ttl = 4 * time.Second
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, map[string]string{"strict.yaml": strictConfig}),
		controlplane.WithPlaintextXDSAddress("127.0.0.1:0"), controlplane.WithSVIDTTL(ttl))
	g := startGoServer(t, cp, "go-secure", "v1", serverOptions{})
	secure := fmt.Sprintf("xds:///go-secure.default.svc.cluster.local:%d", servicePort)
	meshtest.WaitUntil(t, 15*time.Second, "the Go server to serve", func() bool {
		d := cp.Dump()
		return len(d.Instances) == 1 && d.Instances[0].State == "SERVING"
	})

	t.Run("rotation", func(t *testing.T) {
		svid, agent := startAgent(t, cp, "python-client")
		// The files are re-read every second, and a new connection (a new
		// handshake) is made every 10 calls: 200 calls 40ms apart take 8s,
		// two SVID lifetimes.
		bootstrap, nodeID := writeBootstrap(t, cp, "python-client", svid, time.Second)
		before := rotations(agent)
		const n = 200
		c := startClient(t, pythonLang, bootstrap, secure, clientOptions{count: n, interval: 40 * time.Millisecond, callsPerChannel: 10})
		results := c.results(t, 5*time.Second)
		checkStream(t, cp, nodeID, pythonLang.kind)
		c.finish(t)
		rotated := rotations(agent) - before
		got := count(results)
		if got.failed > 0 || got.versions["v1"] != n {
			t.Errorf("%v, want all %d calls answered", got, n)
		}
		want := "spiffe://cluster.local/ns/default/sa/python-client"
		for i, r := range results {
			if r.OK && r.Message != want {
				t.Fatalf("call %d: the server saw %q call, want %s over mTLS", i+1, r.Message, want)
			}
		}
		if rotated < 2 {
			t.Errorf("the agent rotated the SVID %d times while the client called, want 2 or more:\n%s", rotated, tail(agent.log.String(), 20))
		}
		if certs := g.certificates(); certs < 2 {
			t.Errorf("the server saw %d client certificates, want the rotated ones too", certs)
		}
		t.Logf("%d calls over mTLS as %s, 0 failed; %d rotations meanwhile, %d client certificates seen", n, want, rotated, g.certificates())
	})

	// Without an SVID the client can only send plaintext: with insecure
	// credentials, or with xDS credentials and no certificate files.
	for _, tc := range []struct {
		name string
		o    clientOptions
	}{
		{"plaintext credentials", clientOptions{plainCreds: true}},
		{"no certificate files", clientOptions{}},
	} {
		t.Run("no SVID/"+tc.name, func(t *testing.T) {
			// An empty directory where the files would be.
			bootstrap, nodeID := writeBootstrap(t, cp, "python-client", t.TempDir(), time.Second)
			const n = 5
			o := tc.o
			o.count, o.timeout, o.ready = n, 2*time.Second, 3*time.Second
			answered := g.calls.Load()
			c := startClient(t, pythonLang, bootstrap, secure, o)
			results := c.results(t, o.timeout)
			checkStream(t, cp, nodeID, pythonLang.kind)
			c.finish(t)
			got := count(results)
			if got.failed != n {
				t.Errorf("%v, want all %d calls to fail", got, n)
			}
			if d := g.calls.Load() - answered; d != 0 {
				t.Errorf("the STRICT server answered %d calls of a client without an SVID, want none", d)
			}
			t.Logf("%d calls failed: %v", n, got.failures)
		})
	}
}
