package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// conformanceDir is where the developers' checkout keeps Istio's Bookinfo
// samples, beside the repository; they are not part of it.
const conformanceDir = "../../../../shared/conformance/istio-bookinfo"

// TestConformanceBookinfo loads Istio's own Bookinfo networking samples from
// the directory in MESHLET_CONFORMANCE_DIR, or from the shared directory
// beside the repository. Every file must load, or be refused with a reason.
// It does nothing in a plain clone, where neither exists.
func TestConformanceBookinfo(t *testing.T) {
	dir := os.Getenv("MESHLET_CONFORMANCE_DIR")
	if dir == "" {
		if _, err := os.Stat(conformanceDir); err != nil {
			t.Log("no Bookinfo samples here (set MESHLET_CONFORMANCE_DIR); not running the conformance check")
			return
		}
		dir = conformanceDir
	}
	read := func(name string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rules := read("destination-rule-all.yaml")

	t.Run("destination-rule-all.yaml", func(t *testing.T) {
		if _, err := config.Parse(map[string][]byte{"destination-rule-all.yaml": rules}); err != nil {
			t.Errorf("refused:\n%v", err)
		}
	})

	t.Run("destination-rule-all-mtls.yaml", func(t *testing.T) {
		cfg, err := config.Parse(map[string][]byte{"destination-rule-all-mtls.yaml": read("destination-rule-all-mtls.yaml")})
		if err != nil {
			t.Fatalf("refused:\n%v", err)
		}
		if len(cfg.DestinationRules) == 0 {
			t.Fatal("no DestinationRules loaded")
		}
		for _, dr := range cfg.DestinationRules {
			if got := dr.Spec.GetTrafficPolicy().GetTls().GetMode(); got != networking.ClientTLSSettings_ISTIO_MUTUAL {
				t.Errorf("%s: tls.mode = %v, want ISTIO_MUTUAL", dr.Meta, got)
			}
		}
	})

	var files []string
	for _, pattern := range []string{"virtual-service*.yaml", "fault*.yaml"} {
		m, err := filepath.Glob(filepath.Join(dir, pattern))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	if len(files) == 0 {
		t.Fatalf("no virtual-service*.yaml or fault*.yaml files in %s", dir)
	}
	for _, path := range files {
		name := filepath.Base(path)
		t.Run(name, func(t *testing.T) {
			content := read(name)
			files := map[string][]byte{"destination-rule-all.yaml": rules, name: content}
			if strings.Contains(string(content), "kind: DestinationRule") {
				// It brings its own rules, which destination-rule-all.yaml
				// would define twice.
				files = map[string][]byte{name: content}
			}
			if _, err := config.Parse(files); err != nil {
				t.Errorf("refused:\n%v", err)
			}
		})
	}
}
