package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/mesh"
)

const bootstrapUsage = `meshctl bootstrap: print the GRPC_XDS_BOOTSTRAP file of a gRPC service that is not
built with meshlet's library (Python, Node, C++, plain grpc-go) and follows meshlet's
control plane with its own xDS client.

Usage:
  meshctl bootstrap --control-plane ADDR --service NAME [flags]

Flags:
  --control-plane ADDR    the control plane, host:port (env MESHLET_CONTROL_PLANE). With
                          --channel-creds tls, its gRPC port; with insecure, its read-only
                          --plaintext-xds-address port (the gRPC port refuses plaintext)
  --service NAME          the service this workload is (required)
  --namespace NS          its namespace (default default)
  --service-account SA    its service account (default: the service). With tls it must be
                          the one in the certificate, as must the namespace
  --version V             the label version=V
  --labels K=V,...        more labels (app defaults to the service)
  --locality R/Z/S        region/zone/subzone
  --node-id ID            the xDS node ID (default: meshlet's form, with a random part)
  --cert-dir DIR          where cert.pem, key.pem and bundle.pem are, as meshctl agent
                          writes them (default ./svid; written as an absolute path)
  --channel-creds C       tls (default): mTLS with the files above (gRPC-Go 1.57+, newer
                          C-core); or insecure: plaintext, for clients without "tls" channel
                          creds (python3-grpcio 1.51, grpc-js-xds 1.14), and only to the
                          control plane's read-only --plaintext-xds-address port, which
                          serves client resources only (no server Listeners)
  --refresh D             how often the client re-reads the files (default 1m; keep it
                          well under half the SVID lifetime)
  -o FILE                 write the bootstrap to FILE (atomically) instead of stdout

The xDS client dials services by their full name: xds:///reviews.default.svc.cluster.local:9080.
`

// bootstrap runs "meshctl bootstrap".
func (c *cli) bootstrap(args []string) int {
	fs := flag.NewFlagSet("meshctl bootstrap", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cfg controlplane.BootstrapConfig
	var version, labels, locality, certDir, out string
	fs.StringVar(&cfg.ControlPlane, "control-plane", os.Getenv(mesh.EnvControlPlane), "")
	fs.StringVar(&cfg.Service, "service", "", "")
	fs.StringVar(&cfg.Namespace, "namespace", "default", "")
	fs.StringVar(&cfg.ServiceAccount, "service-account", "", "")
	fs.StringVar(&version, "version", "", "")
	fs.StringVar(&labels, "labels", "", "")
	fs.StringVar(&locality, "locality", "", "")
	fs.StringVar(&cfg.NodeID, "node-id", "", "")
	fs.StringVar(&certDir, "cert-dir", "svid", "")
	fs.StringVar(&cfg.ChannelCreds, "channel-creds", controlplane.ChannelCredsTLS, "")
	fs.DurationVar(&cfg.RefreshInterval, "refresh", controlplane.DefaultBootstrapRefresh, "")
	fs.StringVar(&out, "o", "", "")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(c.stdout, bootstrapUsage)
		return exitOK
	} else if err != nil {
		return c.subUsageError(bootstrapUsage, "bootstrap: %v", err)
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q (every setting is a flag)", fs.Args()))
	}
	if cfg.ControlPlane == "" {
		problems = append(problems, "--control-plane is required (or set "+mesh.EnvControlPlane+")")
	}
	if cfg.Service == "" {
		problems = append(problems, "--service is required")
	}
	var err error
	if cfg.Labels, err = parseLabels(labels); err != nil {
		problems = append(problems, err.Error())
	}
	if version != "" {
		if v, ok := cfg.Labels["version"]; ok && v != version {
			problems = append(problems, fmt.Sprintf("--version %q and --labels version=%q disagree", version, v))
		}
		cfg.Labels["version"] = version
	}
	if locality != "" {
		parts := strings.Split(locality, "/")
		if len(parts) > 3 || parts[0] == "" {
			problems = append(problems, fmt.Sprintf("--locality %q: want region[/zone[/subzone]]", locality))
		} else {
			parts = append(parts, "", "")
			cfg.Locality = balancer.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
		}
	}
	if cfg.ChannelCreds != controlplane.ChannelCredsTLS && cfg.ChannelCreds != controlplane.ChannelCredsInsecure {
		problems = append(problems, fmt.Sprintf("--channel-creds %q: want tls or insecure", cfg.ChannelCreds))
	}
	if cfg.RefreshInterval < time.Second {
		problems = append(problems, fmt.Sprintf("--refresh %s: want at least 1s", cfg.RefreshInterval))
	}
	if certDir == "" {
		problems = append(problems, "--cert-dir is empty")
	} else if certDir, err = filepath.Abs(certDir); err != nil {
		problems = append(problems, fmt.Sprintf("--cert-dir: %v", err))
	}
	if len(problems) > 0 {
		return c.subUsageError(bootstrapUsage, "bootstrap: %s", strings.Join(problems, "; "))
	}
	cfg.CertFile, cfg.KeyFile, cfg.BundleFile = svidPaths(certDir)
	data, err := controlplane.ClientBootstrap(cfg)
	if err != nil {
		// What the flags cannot say: a bad name or address.
		return c.subUsageError(bootstrapUsage, "bootstrap: %s", flagNames(err))
	}
	if out == "" {
		if _, err := c.stdout.Write(data); err != nil {
			return c.fail(err)
		}
		return exitOK
	}
	if err := writeFileAtomic(out, data, 0o644); err != nil {
		return c.fail(fmt.Errorf("bootstrap: %w", err))
	}
	return exitOK
}

// flagNames says BootstrapConfig's errors with the flags' names.
func flagNames(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", "; ")
	return strings.NewReplacer(
		"controlplane: bootstrap: ", "",
		"ControlPlane:", "--control-plane:",
		"ServiceAccount:", "--service-account:",
		"Service:", "--service:",
		"Namespace:", "--namespace:",
		"Labels:", "--labels:",
	).Replace(s)
}

// parseLabels parses "k=v,k2=v2".
func parseLabels(s string) (map[string]string, error) {
	m := map[string]string{}
	if s == "" {
		return m, nil
	}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("--labels %q: %q is not key=value", s, kv)
		}
		m[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	return m, nil
}

// The files of an SVID directory, as meshctl agent writes them.
const (
	certFileName   = "cert.pem"
	keyFileName    = "key.pem"
	bundleFileName = "bundle.pem"
)

func svidPaths(dir string) (cert, key, bundle string) {
	return filepath.Join(dir, certFileName), filepath.Join(dir, keyFileName), filepath.Join(dir, bundleFileName)
}

// writeFileAtomic writes data to a temporary file next to path, then
// renames it over path: a reader sees the old file or the new one, never
// part of one.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(path, data, perm)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// writeTemp writes data, synced, to a new temporary file in path's
// directory, to be renamed over path.
func writeTemp(path string, data []byte, perm os.FileMode) (string, error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return "", err
	}
	err = errors.Join(func() error {
		if _, err := tmp.Write(data); err != nil {
			return err
		}
		if err := tmp.Chmod(perm); err != nil {
			return err
		}
		return tmp.Sync()
	}(), tmp.Close())
	if err != nil {
		os.Remove(tmp.Name())
		return "", err
	}
	return tmp.Name(), nil
}

// subUsageError reports a bad command line of a command with its own
// usage text.
func (c *cli) subUsageError(usage, format string, a ...any) int {
	fmt.Fprintf(c.stderr, "meshctl: "+format+"\n\n%s", append(a, usage)...)
	return exitUsage
}
