package mesh_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshlet/meshlet/meshtest"
)

// An HTTP server whose identity the cluster does not expect is refused
// with the names the cluster expects, the cluster, and where the control
// plane took the names from.
func TestHTTPSANRefusalSaysWhere(t *testing.T) {
	cluster := fmt.Sprintf("outbound|%d||greeter.default.svc.cluster.local", greeterPort)
	for _, tc := range []struct{ san, from string }{
		{"secure.example", "the subjectAltNames of the ServiceEntry for the host"},
		{"spiffe://cluster.local/ns/default/sa/someone-else", "the service accounts of its endpoints, unless a ServiceEntry for the host sets subjectAltNames"},
	} {
		t.Run(tc.san, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter.yaml": secureServiceEntry(tc.san)})
			startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
			waitRegistered(t, cp, 1)
			c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
			var err error
			meshtest.WaitUntil(t, 15*time.Second, "the request to fail the server's identity check", func() bool {
				_, err = httpCall(t.Context(), c, "/", "")
				return err != nil && strings.Contains(err.Error(), "matches none")
			})
			t.Logf("refused: %v", err)
			for _, want := range []string{tc.san, cluster, tc.from, "spiffe://cluster.local/ns/default/sa/greeter"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q", want)
				}
			}
		})
	}
}
