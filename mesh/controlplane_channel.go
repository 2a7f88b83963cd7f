package mesh

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/localtrust"
	"github.com/meshlet/meshlet/internal/wire"
)

// EnvControlPlaneRoots names the environment variable that gives a PEM
// file of the roots the control plane's certificate chains to, when
// WithControlPlaneRoots is not used. A control plane on this host keeps
// them in <state dir>/ca/root-cert.pem and logs the path at start.
const EnvControlPlaneRoots = "MESHLET_CONTROL_PLANE_ROOTS"

// WithControlPlaneRoots sets the roots the control plane's certificate
// must chain to. Workloads hold them out of band: nothing the control
// plane sends can change them. Without it, the roots come from
// MESHLET_CONTROL_PLANE_ROOTS, from the identity source's bundle (SPIRE,
// files), from a control plane in the same process, or, for a control
// plane on loopback, from its default state directory.
func WithControlPlaneRoots(roots ...*x509.Certificate) Option {
	return optionFunc(func(o *options) { o.cpRoots = append(o.cpRoots, roots...) })
}

// WithControlPlaneRootsFile is WithControlPlaneRoots with a PEM file.
func WithControlPlaneRootsFile(path string) Option {
	return optionFunc(func(o *options) { o.cpRootsFile = path })
}

// WithControlPlaneIdentity sets the SPIFFE ID the control plane must
// prove. Default spiffe://<trust domain>/ns/istio-system/sa/
// meshlet-controlplane; a control plane with another root namespace has
// that namespace in its ID.
func WithControlPlaneIdentity(id string) Option {
	return optionFunc(func(o *options) { o.cpID = id })
}

// WithInsecureControlPlane talks plaintext to a control plane started in
// its insecure development mode. Nothing on the channel is then proven;
// for loopback development only.
func WithInsecureControlPlane() Option {
	return optionFunc(func(o *options) { o.cpInsecure = true })
}

// cpTrust is what a workload verifies the control plane with: the roots
// it holds out of band and the control plane's SPIFFE ID. It is read on
// every handshake.
type cpTrust struct {
	addr   string
	td     spiffeid.TrustDomain
	id     spiffeid.ID
	static []*x509.Certificate // option, file, state directory
	from   []string            // where static came from, for errors
	mu     sync.Mutex
	src    x509bundle.Source // the identity source's bundle, once known
}

func newCPTrust(o options) (*cpTrust, error) {
	td, err := spiffeid.TrustDomainFromString(o.trustDomain)
	if err != nil {
		return nil, fmt.Errorf("mesh: trust domain %q: %w", o.trustDomain, err)
	}
	cpID := o.cpID
	if cpID == "" {
		cpID = wire.ControlPlaneID(td.Name(), wire.DefaultRootNamespace)
	}
	id, err := spiffeid.FromString(cpID)
	if err != nil {
		return nil, fmt.Errorf("mesh: control plane identity %q: %w", cpID, err)
	}
	t := &cpTrust{addr: o.controlPlane, td: td, id: id, static: o.cpRoots}
	if len(o.cpRoots) > 0 {
		t.from = append(t.from, "WithControlPlaneRoots")
	}
	file := o.cpRootsFile
	if file == "" {
		file = os.Getenv(EnvControlPlaneRoots)
	}
	if file != "" {
		roots, err := certfile.Read(file)
		if err != nil {
			return nil, fmt.Errorf("mesh: control plane roots: %w", err)
		}
		t.static = append(t.static, roots...)
		t.from = append(t.from, file)
	} else if len(t.static) == 0 && localtrust.Loopback(o.controlPlane) {
		// A control plane on this host with default flags keeps its root
		// here; only this user (or root) can write it.
		if dir, err := localtrust.DefaultStateDir(); err == nil {
			if roots, err := certfile.Read(localtrust.CARootPath(dir)); err == nil {
				t.static = append(t.static, roots...)
				t.from = append(t.from, localtrust.CARootPath(dir)+" (the default state directory of a control plane on this host)")
			}
		}
	}
	return t, nil
}

// describe says where the roots come from, for errors.
func (t *cpTrust) describe() string {
	from := slices.Clone(t.from)
	if len(localtrust.Roots(t.addr)) > 0 {
		from = append(from, "the control plane in this process")
	}
	t.mu.Lock()
	if t.src != nil {
		from = append(from, "the identity source's bundle")
	}
	t.mu.Unlock()
	if len(from) == 0 {
		return "no roots"
	}
	return strings.Join(from, "; ")
}

// setSource adds the identity source's bundle to the roots.
func (t *cpTrust) setSource(src x509bundle.Source) {
	t.mu.Lock()
	t.src = src
	t.mu.Unlock()
}

// GetX509BundleForTrustDomain implements x509bundle.Source.
func (t *cpTrust) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	if td != t.td {
		return nil, fmt.Errorf("mesh: the control plane must be in trust domain %q, not %q", t.td.Name(), td.Name())
	}
	roots := append([]*x509.Certificate(nil), t.static...)
	roots = append(roots, localtrust.Roots(t.addr)...)
	t.mu.Lock()
	src := t.src
	t.mu.Unlock()
	if src != nil {
		if b, err := src.GetX509BundleForTrustDomain(td); err == nil {
			roots = append(roots, b.X509Authorities()...)
		}
	}
	if len(roots) == 0 {
		return nil, fmt.Errorf("mesh: no roots to verify the control plane at %s with: set %s to its root certificate (the control plane logs the file at start: %s), or use WithControlPlaneRoots", t.addr, EnvControlPlaneRoots, localtrust.CARootPath("<state dir>"))
	}
	return x509bundle.FromX509Authorities(td, roots), nil
}

// serverAuthConfig verifies the control plane and presents nothing: the
// first CSR, authenticated by the workload's token.
func (t *cpTrust) serverAuthConfig() *tls.Config {
	return tlsconfig.TLSClientConfig(t, tlsconfig.AuthorizeID(t.id))
}

// mtlsConfig verifies the control plane and presents the workload's SVID.
func (t *cpTrust) mtlsConfig(svid x509svid.Source) *tls.Config {
	return tlsconfig.MTLSClientConfig(svid, t, tlsconfig.AuthorizeID(t.id))
}

// cpBackoffMax and cpBackoffJitter bound how long a workload waits
// between attempts to reach the control plane: at most cpBackoffMax, ±20%.
const (
	cpBackoffMax    = 2 * time.Second
	cpBackoffJitter = 0.2
)

// dialControlPlane opens a connection to the control plane (lazily, as
// grpc.NewClient does).
func dialControlPlane(addr string, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		// Reconnect fast after a control-plane restart so that servers
		// register again within its warm-up.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: cpBackoffJitter, MaxDelay: cpBackoffMax},
			MinConnectTimeout: 2 * time.Second,
		}))
}

// cpCredentials returns the credentials of the workload's connections to
// the control plane: mTLS with its SVID, or plaintext in the insecure
// development mode.
func (m *Mesh) cpCredentials() credentials.TransportCredentials {
	if m.opts.cpInsecure {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(m.cpTrust.mtlsConfig(m.identity))
}

// checkControlPlane calls the control plane's health service until it
// answers, so that New fails with the reason (a refused connection, a
// certificate the roots do not verify) rather than a bare timeout. It
// says so at WARN while it keeps trying, once per few seconds.
func checkControlPlane(ctx context.Context, cc *grpc.ClientConn, addr string, log *slog.Logger) error {
	client := healthpb.NewHealthClient(cc)
	var last error
	delay := 100 * time.Millisecond
	start, warned := time.Now(), time.Time{}
	for {
		_, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil {
			if !warned.IsZero() {
				log.Info("mesh: control plane reachable", "address", addr, "after", time.Since(start).Round(time.Millisecond))
			}
			return nil
		}
		if ctx.Err() == nil && time.Since(warned) >= retryWarnEvery {
			warned = time.Now()
			log.Warn("mesh: control plane not reachable yet; retrying", "address", addr, "waited", warned.Sub(start).Round(time.Millisecond), "err", err)
		}
		if ctx.Err() != nil {
			if last == nil {
				last = err
			}
			return fmt.Errorf("mesh: control plane %s is not reachable: %w (last error: %w)", addr, ctx.Err(), last)
		}
		last = err
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		delay = min(2*delay, 2*time.Second)
	}
}
