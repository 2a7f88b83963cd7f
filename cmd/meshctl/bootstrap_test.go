package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBootstrapCommand(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "bootstrap.json")
	code, stdout, stderr := meshctl(t, "bootstrap", "--control-plane", "127.0.0.1:15010", "--service", "reviews",
		"--namespace", "shop", "--service-account", "reviewer", "--version", "v2", "--labels", "tier=back, team=a",
		"--locality", "eu/west", "--cert-dir", dir, "--channel-creds", "insecure", "--refresh", "5s", "-o", out)
	if code != exitOK || stdout != "" || stderr != "" {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		XDSServers []struct {
			ServerURI    string           `json:"server_uri"`
			ChannelCreds []map[string]any `json:"channel_creds"`
		} `json:"xds_servers"`
		Node struct {
			ID       string `json:"id"`
			Metadata struct {
				Namespace      string            `json:"NAMESPACE"`
				ServiceAccount string            `json:"SERVICE_ACCOUNT"`
				Labels         map[string]string `json:"LABELS"`
			} `json:"metadata"`
			Locality map[string]string `json:"locality"`
		} `json:"node"`
		CertificateProviders map[string]struct {
			Config map[string]string `json:"config"`
		} `json:"certificate_providers"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatalf("%v:\n%s", err, data)
	}
	md := b.Node.Metadata
	if md.Namespace != "shop" || md.ServiceAccount != "reviewer" || md.Labels["version"] != "v2" || md.Labels["tier"] != "back" ||
		md.Labels["team"] != "a" || md.Labels["app"] != "reviews" || !strings.Contains(b.Node.ID, "reviews-") || !strings.Contains(b.Node.ID, ".shop~shop.") {
		t.Errorf("node: %+v", b.Node)
	}
	if b.Node.Locality["region"] != "eu" || b.Node.Locality["zone"] != "west" {
		t.Errorf("locality %v", b.Node.Locality)
	}
	if len(b.XDSServers) != 1 || len(b.XDSServers[0].ChannelCreds) != 1 || b.XDSServers[0].ChannelCreds[0]["type"] != "insecure" {
		t.Errorf("xds_servers: %+v", b.XDSServers)
	}
	cfg := b.CertificateProviders["meshlet"].Config
	if cfg["certificate_file"] != filepath.Join(dir, "cert.pem") || cfg["private_key_file"] != filepath.Join(dir, "key.pem") ||
		cfg["ca_certificate_file"] != filepath.Join(dir, "bundle.pem") || cfg["refresh_interval"] != "5s" {
		t.Errorf("certificate provider config: %v", cfg)
	}

	// A relative --cert-dir is written as an absolute path; the default is ./svid.
	code, stdout, _ = meshctl(t, "bootstrap", "--control-plane", "127.0.0.1:15010", "--service", "reviews")
	wd, _ := os.Getwd()
	if code != exitOK || !strings.Contains(stdout, `"certificate_file": "`+filepath.Join(wd, "svid", "cert.pem")+`"`) {
		t.Errorf("default --cert-dir: exit %d:\n%s", code, stdout)
	}
}

func TestBootstrapCommandErrors(t *testing.T) {
	t.Setenv("MESHLET_CONTROL_PLANE", "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--service", "reviews"}, "--control-plane is required (or set MESHLET_CONTROL_PLANE)"},
		{[]string{"--control-plane", "127.0.0.1:1"}, "--service is required"},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r", "--channel-creds", "google_default"}, `--channel-creds "google_default": want tls or insecure`},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r", "--labels", "a"}, `--labels "a": "a" is not key=value`},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r", "--locality", "a/b/c/d"}, `--locality "a/b/c/d": want region[/zone[/subzone]]`},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r", "--refresh", "10ms"}, "--refresh 10ms: want at least 1s"},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r", "--version", "v1", "--labels", "version=v2"}, `--version "v1" and --labels version="v2" disagree`},
		{[]string{"--control-plane", "127.0.0.1", "--service", "r"}, `--control-plane: "127.0.0.1" is not host:port`},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r.default"}, `--service: "r.default": a service name has no dots`},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r", "--namespace", "A B"}, `--namespace: "A B" is not a namespace name`},
		{[]string{"--control-plane", "127.0.0.1:1", "--service", "r", "extra"}, `unexpected arguments ["extra"]`},
		{[]string{"--bogus"}, "flag provided but not defined: -bogus"},
	} {
		code, stdout, stderr := meshctl(t, append([]string{"bootstrap"}, tc.args...)...)
		if code != exitUsage || stdout != "" || !strings.HasPrefix(stderr, "meshctl: bootstrap: ") || !strings.Contains(stderr, tc.want) {
			t.Errorf("bootstrap %q: exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q", tc.args, code, stdout, stderr, tc.want)
		}
	}
	if code, stdout, _ := meshctl(t, "bootstrap", "-h"); code != exitOK || !strings.Contains(stdout, "--plaintext-xds-address") {
		t.Errorf("bootstrap -h: exit %d:\n%s", code, stdout)
	}
}
