package controlplane_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/meshlet/meshlet/controlplane"
)

// Start a control plane on a directory of Istio YAML and see what it
// serves.
func Example() {
	dir, _ := os.MkdirTemp("", "meshlet-config-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "reviews.yaml"), []byte(goodConfig+"---\n"+goodRoute), 0o644)

	cp, err := controlplane.Start(context.Background(),
		controlplane.WithConfigDir(dir),
		controlplane.WithStateDir(filepath.Join(os.TempDir(), "meshlet-example-state")), // the CA root survives restarts here
		controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress("127.0.0.1:0"),
		controlplane.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cp.Close()
	for _, s := range cp.Dump().Services {
		for _, p := range s.Ports {
			fmt.Println(s.Host, p.Number, p.Protocol)
		}
	}
	// Output: reviews.default.svc.cluster.local 9080 GRPC
}

// mirroringRoute is a VirtualService with a field meshlet refuses.
const mirroringRoute = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - mirror:
      host: reviews
    route:
    - destination:
        host: reviews
`

// An invalid config is refused with an error that names the file, the
// resource, the field and the reason.
func Example_invalid() {
	dir, _ := os.MkdirTemp("", "meshlet-config-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "reviews.yaml"), []byte(mirroringRoute), 0o644)
	_, err := controlplane.Start(context.Background(), controlplane.WithConfigDir(dir),
		controlplane.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	fmt.Println(errors.Unwrap(err)) // without the directory's path
	// Output: reviews.yaml: VirtualService default/reviews: spec.http[0].mirror: out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)
}

// A refused configuration's problems are values: each names the file, the
// resource, the field and the reason.
func ExampleFieldErrors() {
	dir, _ := os.MkdirTemp("", "meshlet-config-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "reviews.yaml"), []byte(mirroringRoute), 0o644)
	_, err := controlplane.Start(context.Background(), controlplane.WithConfigDir(dir),
		controlplane.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	var first *controlplane.FieldError
	fmt.Println(errors.As(err, &first))
	for _, fe := range controlplane.FieldErrors(err) {
		fmt.Printf("%s | %s | %s\n", fe.File, fe.Resource, fe.Path)
	}
	// Output:
	// true
	// reviews.yaml | VirtualService default/reviews | spec.http[0].mirror
}

// Validate checks a config directory offline, as the control plane would
// load it, with every problem named: here a refused field, and a second
// VirtualService for a host that already has one.
func ExampleValidate() {
	dir, _ := os.MkdirTemp("", "meshlet-config-")
	defer os.RemoveAll(dir)
	os.WriteFile(filepath.Join(dir, "reviews.yaml"), []byte(goodConfig+"---\n"+goodRoute), 0o644)
	fmt.Println(controlplane.Validate(dir))
	os.WriteFile(filepath.Join(dir, "mirror.yaml"), []byte(strings.Replace(mirroringRoute, "name: reviews", "name: mirror", 1)), 0o644)
	for _, fe := range controlplane.FieldErrors(controlplane.Validate(dir)) {
		fmt.Printf("%s | %s | %s\n", fe.File, fe.Resource, fe.Path)
	}
	// Output:
	// <nil>
	// mirror.yaml | VirtualService default/mirror | spec.http[0].mirror
	// reviews.yaml | VirtualService default/reviews | spec.hosts[0]
}

// The GRPC_XDS_BOOTSTRAP of a gRPC service outside meshlet's library
// (Python, Node, plain gRPC-Go), whose certificate files meshctl agent
// keeps current.
func ExampleClientBootstrap() {
	b, err := controlplane.ClientBootstrap(controlplane.BootstrapConfig{
		ControlPlane: "127.0.0.1:15010",
		Service:      "reviews",
		Labels:       map[string]string{"version": "v1"},
		NodeID:       "meshlet~reviews-1.default~default.svc.cluster.local",
		CertFile:     "/run/svid/cert.pem",
		KeyFile:      "/run/svid/key.pem",
		BundleFile:   "/run/svid/bundle.pem",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	os.Stdout.Write(b)
	// Output:
	// {
	//   "xds_servers": [
	//     {
	//       "server_uri": "127.0.0.1:15010",
	//       "channel_creds": [
	//         {
	//           "type": "tls",
	//           "config": {
	//             "certificate_file": "/run/svid/cert.pem",
	//             "private_key_file": "/run/svid/key.pem",
	//             "ca_certificate_file": "/run/svid/bundle.pem",
	//             "refresh_interval": "60s"
	//           }
	//         }
	//       ],
	//       "server_features": [
	//         "xds_v3"
	//       ]
	//     }
	//   ],
	//   "node": {
	//     "id": "meshlet~reviews-1.default~default.svc.cluster.local",
	//     "cluster": "reviews.default",
	//     "metadata": {
	//       "GENERATOR": "grpc",
	//       "LABELS": {
	//         "app": "reviews",
	//         "version": "v1"
	//       },
	//       "NAMESPACE": "default",
	//       "SERVICE_ACCOUNT": "reviews",
	//       "WORKLOAD_NAME": "reviews"
	//     },
	//     "locality": {}
	//   },
	//   "certificate_providers": {
	//     "meshlet": {
	//       "plugin_name": "file_watcher",
	//       "config": {
	//         "certificate_file": "/run/svid/cert.pem",
	//         "private_key_file": "/run/svid/key.pem",
	//         "ca_certificate_file": "/run/svid/bundle.pem",
	//         "refresh_interval": "60s"
	//       }
	//     }
	//   },
	//   "server_listener_resource_name_template": "xds.istio.io/grpc/lds/inbound/%s"
	// }
}
