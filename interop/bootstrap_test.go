package interop_test

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/meshtest"
)

// svidFiles are a workload's certificate, key and trust bundle files.
type svidFiles struct{ cert, key, bundle string }

// clientSVID writes an SVID of cp's CA for ns/default/sa/<service> into
// files.
func clientSVID(t testing.TB, cp *controlplane.Server, service string) svidFiles {
	t.Helper()
	cert, key, bundle := meshtest.SVIDFiles(t, cp, "default", service)
	return svidFiles{cert, key, bundle}
}

// channelCreds is how a language's xDS client reaches the control plane:
// neither python3-grpcio 1.51 (gRFC A65's "tls" came in C-core 1.57) nor
// grpc-js-xds 1.14.1 (it knows "google_default" and "insecure" only) can
// present a certificate to the control plane, so both use the read-only
// plaintext port. Their calls still use mTLS where xDS says so, with the
// "meshlet" certificate provider.
func channelCreds(language) string { return "insecure" }

// writeBootstrap writes a GRPC_XDS_BOOTSTRAP file for a client of service
// in lang with the SVID files, and returns its path and node ID.
//
// TODO(interop): replace by `meshctl bootstrap` once branch boot merges.
func writeBootstrap(t testing.TB, cp *controlplane.Server, lang language, service string, svid svidFiles) (path, nodeID string) {
	t.Helper()
	suffix := make([]byte, 4)
	rand.Read(suffix)
	nodeID = wire.NodeID(service, hex.EncodeToString(suffix), "default")
	files := map[string]string{"certificate_file": svid.cert, "private_key_file": svid.key, "ca_certificate_file": svid.bundle, "refresh_interval": "60s"}
	creds := map[string]any{"type": "insecure"}
	uri := cp.PlaintextXDSAddr()
	if channelCreds(lang) == "tls" {
		creds = map[string]any{"type": "tls", "config": files}
		uri = cp.XDSAddr()
	}
	b, err := json.MarshalIndent(map[string]any{
		"xds_servers": []any{map[string]any{"server_uri": uri, "channel_creds": []any{creds}, "server_features": []string{"xds_v3"}}},
		"node": map[string]any{
			"id": nodeID, "cluster": service + ".default", "locality": map[string]any{},
			"metadata": wire.NodeMetadata("default", service, service, map[string]string{"app": service}),
		},
		"certificate_providers":                  map[string]any{wire.CertProviderInstance: map[string]any{"plugin_name": "file_watcher", "config": files}},
		"server_listener_resource_name_template": wire.ServerListenerTemplate,
	}, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path, nodeID
}
