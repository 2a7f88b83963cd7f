package mesh_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/xds"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/meshtest"
)

// TestForeignXDSClient: a gRPC-Go client without meshlet, configured only
// by a file-style bootstrap as a service in another language would be,
// follows the secured control plane: over TLS with its SVID files (gRPC's
// "tls" channel credentials), and over the read-only plaintext port. Its
// calls reach a meshlet server over mTLS with the "meshlet" certificate
// provider defined by gRPC's file_watcher plugin.
func TestForeignXDSClient(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": greeterRules, "greeter-route.yaml": splitRoute(100, 0)},
		controlplane.WithPlaintextXDSAddress("127.0.0.1:0"))
	server := startGreeter(t, cp.XDSAddr(), "v1")
	waitRegistered(t, cp, 1)
	cert, key, bundle := meshtest.SVIDFiles(t, cp, "default", "python-client")

	tlsCreds := map[string]any{"type": "tls", "config": map[string]string{
		"ca_certificate_file": bundle, "certificate_file": cert, "private_key_file": key,
	}}
	for _, tc := range []struct {
		name   string
		server string
		creds  any
	}{
		{"TLS with SVID files", cp.XDSAddr(), tlsCreds},
		{"read-only plaintext port", cp.PlaintextXDSAddr(), map[string]string{"type": "insecure"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(map[string]any{
				"xds_servers": []any{map[string]any{"server_uri": tc.server, "channel_creds": []any{tc.creds}, "server_features": []string{"xds_v3"}}},
				"node": map[string]any{"id": "python~" + t.Name(), "locality": map[string]any{},
					"metadata": map[string]any{"NAMESPACE": "default", "SERVICE_ACCOUNT": "python-client"}},
				"certificate_providers": map[string]any{"meshlet": map[string]any{"plugin_name": "file_watcher", "config": map[string]string{
					"certificate_file": cert, "private_key_file": key, "ca_certificate_file": bundle, "refresh_interval": "600s",
				}}},
			})
			if err != nil {
				t.Fatal(err)
			}
			// A file, as GRPC_XDS_BOOTSTRAP would name it.
			file := filepath.Join(t.TempDir(), "bootstrap.json")
			if err := os.WriteFile(file, b, 0o600); err != nil {
				t.Fatal(err)
			}
			contents, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			builder, err := xds.NewXDSResolverWithConfigForTesting(contents)
			if err != nil {
				t.Fatal(err)
			}
			creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
			if err != nil {
				t.Fatal(err)
			}
			cc, err := grpc.NewClient(fmt.Sprintf("xds:///greeter.default.svc.cluster.local:%d", greeterPort),
				grpc.WithResolvers(builder), grpc.WithTransportCredentials(creds))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			r := waitCall(t, greeterpb.NewGreeterClient(cc), "a call")
			if r.GetInstance() != server.addr {
				t.Errorf("reached %s, want %s", r.GetInstance(), server.addr)
			}
		})
	}
}
