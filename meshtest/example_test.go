package meshtest_test

import (
	"context"
	"testing"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// In a test of your own service: a real control plane on loopback with the
// config the test needs, and the service joining it.
func ExampleStartControlPlane() {
	var t *testing.T // the test's own t
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
`})
	cp := meshtest.StartControlPlane(t, dir)
	m, err := mesh.New(context.Background(), mesh.WithService("productpage"), mesh.WithControlPlane(cp.XDSAddr()))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
}
