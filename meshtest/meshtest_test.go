package meshtest_test

import (
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/meshlet/meshlet/meshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartControlPlaneServesTheConfig(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"sub/rules.yaml": `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
`})
	if _, err := os.Stat(filepath.Join(dir, "sub", "rules.yaml")); err != nil {
		t.Fatalf("WriteConfig did not write the file: %v", err)
	}
	cp := meshtest.StartControlPlane(t, dir)
	resp, err := http.Get("http://" + cp.AdminAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz = %d, want 200", resp.StatusCode)
	}
}
