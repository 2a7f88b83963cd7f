package meshtest_test

import (
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/workloadapi"

	"github.com/meshlet/meshlet/meshtest"
)

// TestStartSPIREServesAnSVID needs spire-server and spire-agent: it fails,
// saying to run scripts/install-spire, when they are missing.
func TestStartSPIREServesAnSVID(t *testing.T) {
	const id = "spiffe://cluster.local/ns/default/sa/greeter"
	const ttl = 60 * time.Second

	s := meshtest.StartSPIRE(t)
	if s.TrustDomain != "cluster.local" {
		t.Errorf("TrustDomain = %q, want cluster.local", s.TrustDomain)
	}
	s.CreateEntry(t, id, ttl)

	source, err := workloadapi.NewX509Source(t.Context(), workloadapi.WithClientOptions(workloadapi.WithAddr(s.Addr())))
	if err != nil {
		t.Fatalf("NewX509Source(%s): %v", s.Addr(), err)
	}
	defer source.Close()
	svid, err := source.GetX509SVID()
	if err != nil {
		t.Fatalf("GetX509SVID: %v", err)
	}
	if got := svid.ID.String(); got != id {
		t.Errorf("SVID ID = %s, want %s", got, id)
	}
	leaf := svid.Certificates[0]
	if got := leaf.URIs; len(got) != 1 || got[0].String() != id {
		t.Errorf("leaf URI SANs = %v, want [%s]", got, id)
	}

	// SPIRE issues with NotAfter = issue time + ttl and NotBefore 10s
	// earlier (its clock-skew cushion). The SVID was issued at most a few
	// seconds ago, so it has between 45s and 60s left.
	const cushion = 10 * time.Second
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got < ttl || got > ttl+cushion+time.Second {
		t.Errorf("SVID lifetime NotAfter-NotBefore = %v, want %v..%v", got, ttl, ttl+cushion+time.Second)
	}
	if left := time.Until(leaf.NotAfter); left <= ttl-15*time.Second || left > ttl+time.Second {
		t.Errorf("SVID expires in %v, want about %v", left, ttl)
	}

	// The trust bundle the Workload API serves verifies the SVID.
	bundle, err := source.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		t.Fatalf("bundle for %s: %v", svid.ID.TrustDomain(), err)
	}
	if len(bundle.X509Authorities()) == 0 {
		t.Errorf("bundle for %s has no X.509 authorities", svid.ID.TrustDomain())
	}
}

func TestSPIREBinDirSaysHowToInstall(t *testing.T) {
	t.Setenv("MESHLET_SPIRE_BIN", t.TempDir())
	_, err := meshtest.SPIREBinDir()
	if err == nil {
		t.Fatal("SPIREBinDir with an empty MESHLET_SPIRE_BIN: no error")
	}
	if want := "scripts/install-spire"; !strings.Contains(err.Error(), want) {
		t.Errorf("SPIREBinDir error %q does not say %q", err, want)
	}
}
