package mesh_test

import (
	"fmt"
	"strings"
	"testing"
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
			_, _, err := sanRefusal(t, tc.san)
			for _, want := range []string{tc.san, cluster, tc.from, "spiffe://cluster.local/ns/default/sa/greeter"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q", want)
				}
			}
		})
	}
}
