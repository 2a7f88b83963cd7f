package controlplane_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/xds"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/controlplane"
)

func goodBootstrap() controlplane.BootstrapConfig {
	return controlplane.BootstrapConfig{
		ControlPlane: "127.0.0.1:15010",
		Service:      "reviews",
		CertFile:     "/svid/cert.pem", KeyFile: "/svid/key.pem", BundleFile: "/svid/bundle.pem",
	}
}

// gRPC-Go's own bootstrap parser takes what ClientBootstrap writes, with
// either channel credentials.
func TestClientBootstrapParsesInGRPCGo(t *testing.T) {
	for _, creds := range []string{controlplane.ChannelCredsTLS, controlplane.ChannelCredsInsecure} {
		c := goodBootstrap()
		c.ChannelCreds = creds
		c.Labels = map[string]string{"version": "v1"}
		c.Locality = balancer.Locality{Region: "eu", Zone: "a"}
		b, err := controlplane.ClientBootstrap(c)
		if err != nil {
			t.Fatalf("%s: %v", creds, err)
		}
		if _, err := xds.NewXDSResolverWithConfigForTesting(b); err != nil {
			t.Errorf("%s: gRPC-Go refuses the bootstrap: %v\n%s", creds, err, b)
		}
	}
}

// The fields another client reads: the node in meshlet's format, the
// certificate-provider instance the served TLS contexts name, and the
// server Listener template.
func TestClientBootstrapDefaults(t *testing.T) {
	b, err := controlplane.ClientBootstrap(goodBootstrap())
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		XDSServers []struct {
			ServerURI    string `json:"server_uri"`
			ChannelCreds []struct {
				Type   string            `json:"type"`
				Config map[string]string `json:"config"`
			} `json:"channel_creds"`
		} `json:"xds_servers"`
		Node struct {
			ID       string         `json:"id"`
			Cluster  string         `json:"cluster"`
			Metadata map[string]any `json:"metadata"`
			Locality *struct{}      `json:"locality"`
		} `json:"node"`
		CertificateProviders map[string]struct {
			PluginName string            `json:"plugin_name"`
			Config     map[string]string `json:"config"`
		} `json:"certificate_providers"`
		Template string `json:"server_listener_resource_name_template"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"certificate_file": "/svid/cert.pem", "private_key_file": "/svid/key.pem",
		"ca_certificate_file": "/svid/bundle.pem", "refresh_interval": "60s"}
	if len(got.XDSServers) != 1 || got.XDSServers[0].ServerURI != "127.0.0.1:15010" || len(got.XDSServers[0].ChannelCreds) != 1 ||
		got.XDSServers[0].ChannelCreds[0].Type != "tls" {
		t.Errorf("xds_servers: %+v", got.XDSServers)
	} else if d := cmp.Diff(files, got.XDSServers[0].ChannelCreds[0].Config); d != "" {
		t.Errorf("tls channel creds config (-want +got):\n%s", d)
	}
	if !strings.HasPrefix(got.Node.ID, "meshlet~reviews-") || !strings.HasSuffix(got.Node.ID, ".default~default.svc.cluster.local") {
		t.Errorf("node id %q, want meshlet~reviews-<random>.default~default.svc.cluster.local", got.Node.ID)
	}
	wantMD := map[string]any{"GENERATOR": "grpc", "NAMESPACE": "default", "SERVICE_ACCOUNT": "reviews",
		"WORKLOAD_NAME": "reviews", "LABELS": map[string]any{"app": "reviews"}}
	if d := cmp.Diff(wantMD, got.Node.Metadata); d != "" {
		t.Errorf("node metadata (-want +got):\n%s", d)
	}
	if got.Node.Cluster != "reviews.default" || got.Node.Locality == nil {
		t.Errorf("node cluster %q, locality %v: want reviews.default and an object (grpc-js-xds needs one)", got.Node.Cluster, got.Node.Locality)
	}
	p, ok := got.CertificateProviders["meshlet"]
	if !ok || p.PluginName != "file_watcher" {
		t.Errorf("certificate_providers: %+v, want meshlet: file_watcher", got.CertificateProviders)
	} else if d := cmp.Diff(files, p.Config); d != "" {
		t.Errorf("file_watcher config (-want +got):\n%s", d)
	}
	if got.Template != "xds.istio.io/grpc/lds/inbound/%s" {
		t.Errorf("server_listener_resource_name_template %q", got.Template)
	}

	// Each call names a new node; two replicas must not share one.
	b2, _ := controlplane.ClientBootstrap(goodBootstrap())
	if string(b2) == string(b) {
		t.Error("two bootstraps have the same node ID")
	}
}

func TestClientBootstrapErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*controlplane.BootstrapConfig)
		want []string
	}{
		{"nothing", func(c *controlplane.BootstrapConfig) { *c = controlplane.BootstrapConfig{} }, []string{
			"controlplane: bootstrap: ControlPlane: required (the control plane's address, host:port)",
			"controlplane: bootstrap: Service: required",
			"controlplane: bootstrap: CertFile: required (the PEM file meshctl agent writes)",
			"controlplane: bootstrap: KeyFile: required",
			"controlplane: bootstrap: BundleFile: required",
		}},
		{"address", func(c *controlplane.BootstrapConfig) { c.ControlPlane = "127.0.0.1" }, []string{`ControlPlane: "127.0.0.1" is not host:port`}},
		{"port", func(c *controlplane.BootstrapConfig) { c.ControlPlane = "cp:0" }, []string{`ControlPlane: "cp:0" is not host:port`}},
		{"service", func(c *controlplane.BootstrapConfig) { c.Service = "reviews.default" }, []string{`Service: "reviews.default": a service name has no dots`}},
		{"namespace", func(c *controlplane.BootstrapConfig) { c.Namespace = "a/b" }, []string{`Namespace: "a/b" is not a namespace name`}},
		{"service account", func(c *controlplane.BootstrapConfig) { c.ServiceAccount = "A B" }, []string{`ServiceAccount: "A B" is not a service account name`}},
		{"label", func(c *controlplane.BootstrapConfig) { c.Labels = map[string]string{"": "x"} }, []string{"Labels: a label has an empty key"}},
		{"creds", func(c *controlplane.BootstrapConfig) { c.ChannelCreds = "google_default" }, []string{`ChannelCreds: "google_default": want "tls" or "insecure"`}},
		{"refresh", func(c *controlplane.BootstrapConfig) { c.RefreshInterval = time.Millisecond }, []string{"RefreshInterval: 1ms: want at least 1s"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := goodBootstrap()
			tc.edit(&c)
			b, err := controlplane.ClientBootstrap(c)
			if err == nil {
				t.Fatalf("no error; got\n%s", b)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%v", w, err)
				}
			}
		})
	}
}
