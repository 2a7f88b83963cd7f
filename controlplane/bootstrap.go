package controlplane

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/wire"
)

// The channel credentials a bootstrap's xDS client reaches the control
// plane with (BootstrapConfig.ChannelCreds).
const (
	// ChannelCredsTLS is gRFC A65's "tls": the control plane is verified
	// with the bundle file, and the workload presents its certificate and
	// key files, which the control plane's gRPC port requires. gRPC-Go
	// has it (1.57 and later), as newer C-core (Python, C++) does;
	// python3-grpcio 1.51 and grpc-js-xds 1.14 do not (they know only
	// "insecure" and "google_default"). The client checks the control
	// plane's host name or IP, not its SPIFFE ID.
	ChannelCredsTLS = "tls"
	// ChannelCredsInsecure is plaintext, for xDS clients that cannot do
	// TLS to the control plane (python3-grpcio 1.51, grpc-js-xds 1.14). The control
	// plane's main port refuses plaintext: point such a client at the
	// read-only port that --plaintext-xds-address opens (client resources
	// only: no server Listeners, no registration, no CA).
	ChannelCredsInsecure = "insecure"
)

// DefaultBootstrapRefresh is how often a bootstrap's file_watcher
// certificate provider re-reads the workload's certificate, key and bundle
// files. It must be well under half the SVID lifetime (DefaultSVIDTTL), as
// the files are rewritten at half-life.
const DefaultBootstrapRefresh = time.Minute

// BootstrapConfig describes a workload whose own xDS client (gRPC in any
// language, through GRPC_XDS_BOOTSTRAP) follows the control plane. Zero
// fields have the defaults their comments give.
type BootstrapConfig struct {
	// ControlPlane is the control plane's address, host:port: its gRPC
	// port with ChannelCredsTLS, its --plaintext-xds-address port with
	// ChannelCredsInsecure. Required. With TLS the client checks the host
	// against the control plane's certificate, which names localhost, the
	// loopback IPs, the host name, the bind IP and --serving-names.
	ControlPlane string
	// Service is the workload's service name. Required.
	Service string
	// Namespace is the workload's namespace. Default "default".
	Namespace string
	// ServiceAccount is the workload's service account. Default Service.
	// Over TLS it must be the one the certificate proves, as Namespace
	// must: the control plane refuses a node that claims another.
	ServiceAccount string
	// Labels are the workload's labels (version, ...). "app" defaults to
	// Service, as for meshlet's own workloads.
	Labels map[string]string
	// Locality is where the workload runs. An empty one is written as an
	// empty object: grpc-js-xds refuses a node without one.
	Locality balancer.Locality
	// NodeID is the xDS node ID. Default: meshlet's form,
	// meshlet~<service>-<random>.<namespace>~<namespace>.svc.cluster.local,
	// a new one per call.
	NodeID string
	// CertFile, KeyFile and BundleFile are the PEM files of the workload's
	// certificate chain, its private key, and the trust bundle that
	// verifies peers and the control plane (what meshctl agent writes).
	// Required. Write absolute paths: the bootstrap is read from the
	// client's working directory.
	CertFile, KeyFile, BundleFile string
	// ChannelCreds is ChannelCredsTLS (the default) or
	// ChannelCredsInsecure.
	ChannelCreds string
	// RefreshInterval is how often the files are re-read. Default
	// DefaultBootstrapRefresh.
	RefreshInterval time.Duration
}

// ClientBootstrap returns the xDS bootstrap (GRPC_XDS_BOOTSTRAP's JSON)
// of a workload whose own gRPC xDS client follows the control plane: the
// control plane as its xDS server, a node in meshlet's format (istiod's
// metadata keys), the certificate-provider instance that the served TLS
// contexts name, backed by gRPC's file_watcher plugin over the given
// files, and the server Listener name template. An error names the
// field that is wrong and why.
func ClientBootstrap(c BootstrapConfig) ([]byte, error) {
	c.Namespace = cmp.Or(c.Namespace, wire.DefaultNamespace)
	c.ServiceAccount = cmp.Or(c.ServiceAccount, c.Service)
	c.ChannelCreds = cmp.Or(c.ChannelCreds, ChannelCredsTLS)
	if c.RefreshInterval == 0 {
		c.RefreshInterval = DefaultBootstrapRefresh
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	labels := map[string]string{"app": c.Service}
	maps.Copy(labels, c.Labels)
	if c.NodeID == "" {
		b := make([]byte, 4)
		rand.Read(b)
		c.NodeID = wire.NodeID(c.Service, hex.EncodeToString(b), c.Namespace)
	}

	files := &fileWatcher{
		CertificateFile:   c.CertFile,
		PrivateKeyFile:    c.KeyFile,
		CACertificateFile: c.BundleFile,
		RefreshInterval:   durationJSON(c.RefreshInterval),
	}
	creds := channelCreds{Type: c.ChannelCreds}
	if c.ChannelCreds == ChannelCredsTLS {
		// gRFC A65: the same config as file_watcher's.
		creds.Config = files
	}
	l := c.Locality
	b := bootstrap{
		XDSServers: []xdsServer{{
			ServerURI:    c.ControlPlane,
			ChannelCreds: []channelCreds{creds},
			// Only xds_v3: ignore_resource_deletion would keep serving a
			// Listener the control plane removed (a server must stop when
			// its Listener goes), and nothing here needs
			// trusted_xds_server.
			ServerFeatures: []string{"xds_v3"},
		}},
		Node: node{
			ID:       c.NodeID,
			Cluster:  c.Service + "." + c.Namespace,
			Metadata: wire.NodeMetadata(c.Namespace, c.ServiceAccount, c.Service, labels),
			Locality: locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone},
		},
		CertificateProviders: map[string]certProvider{
			wire.CertProviderInstance: {PluginName: "file_watcher", Config: files},
		},
		ServerListenerResourceNameTemplate: wire.ServerListenerTemplate,
	}
	out, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("controlplane: bootstrap: %w", err)
	}
	return append(out, '\n'), nil
}

// check says which fields are wrong, all of them.
func (c BootstrapConfig) check() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, fmt.Errorf("controlplane: bootstrap: %s: %s", field, fmt.Sprintf(format, a...)))
	}
	if c.ControlPlane == "" {
		bad("ControlPlane", "required (the control plane's address, host:port)")
	} else if host, port, err := net.SplitHostPort(c.ControlPlane); err != nil || host == "" || !validPort(port) {
		bad("ControlPlane", "%q is not host:port", c.ControlPlane)
	}
	switch {
	case c.Service == "":
		bad("Service", "required")
	case strings.ContainsAny(c.Service, "./: \t\n~|"):
		bad("Service", "%q: a service name has no dots, slashes, colons, spaces, '~' or '|'", c.Service)
	}
	// Both become path segments of the SPIFFE ID the certificate proves.
	td := spiffeid.RequireTrustDomainFromString(wire.DefaultTrustDomain)
	if _, err := spiffeid.FromSegments(td, "ns", c.Namespace); err != nil || strings.ContainsAny(c.Namespace, ".~") {
		bad("Namespace", "%q is not a namespace name", c.Namespace)
	}
	if _, err := spiffeid.FromSegments(td, "sa", c.ServiceAccount); err != nil || strings.Contains(c.ServiceAccount, "~") {
		bad("ServiceAccount", "%q is not a service account name", c.ServiceAccount)
	}
	if _, ok := c.Labels[""]; ok {
		bad("Labels", "a label has an empty key")
	}
	for _, f := range []struct{ field, path string }{{"CertFile", c.CertFile}, {"KeyFile", c.KeyFile}, {"BundleFile", c.BundleFile}} {
		if f.path == "" {
			bad(f.field, "required (the PEM file meshctl agent writes)")
		}
	}
	switch c.ChannelCreds {
	case ChannelCredsTLS, ChannelCredsInsecure:
	default:
		bad("ChannelCreds", "%q: want %q or %q", c.ChannelCreds, ChannelCredsTLS, ChannelCredsInsecure)
	}
	if c.RefreshInterval < time.Second {
		bad("RefreshInterval", "%s: want at least 1s", c.RefreshInterval)
	}
	return errors.Join(errs...)
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n > 0 && n < 65536
}

// durationJSON is d as a google.protobuf.Duration in JSON, which
// refresh_interval is: "90s", "0.5s".
func durationJSON(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// The bootstrap's JSON, in gRFC A27's field order.
type bootstrap struct {
	XDSServers                         []xdsServer             `json:"xds_servers"`
	Node                               node                    `json:"node"`
	CertificateProviders               map[string]certProvider `json:"certificate_providers"`
	ServerListenerResourceNameTemplate string                  `json:"server_listener_resource_name_template"`
}

type xdsServer struct {
	ServerURI      string         `json:"server_uri"`
	ChannelCreds   []channelCreds `json:"channel_creds"`
	ServerFeatures []string       `json:"server_features"`
}

type node struct {
	ID       string         `json:"id"`
	Cluster  string         `json:"cluster"`
	Metadata map[string]any `json:"metadata"`
	Locality locality       `json:"locality"`
}

type locality struct {
	Region  string `json:"region,omitempty"`
	Zone    string `json:"zone,omitempty"`
	SubZone string `json:"sub_zone,omitempty"`
}

type channelCreds struct {
	Type   string       `json:"type"`
	Config *fileWatcher `json:"config,omitempty"`
}

type certProvider struct {
	PluginName string       `json:"plugin_name"`
	Config     *fileWatcher `json:"config"`
}

type fileWatcher struct {
	CertificateFile   string `json:"certificate_file"`
	PrivateKeyFile    string `json:"private_key_file"`
	CACertificateFile string `json:"ca_certificate_file"`
	RefreshInterval   string `json:"refresh_interval"`
}
