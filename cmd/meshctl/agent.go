package main

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/localtrust"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/security"
)

const agentUsage = `meshctl agent: get a workload's SVID and keep DIR/cert.pem, key.pem and bundle.pem
current, for a gRPC service outside meshlet's library (see meshctl bootstrap) or
anything else that reads certificate files.

Usage:
  meshctl agent --control-plane ADDR --service-account SA --out DIR [flags]
  meshctl agent --spiffe-socket ADDR --out DIR [flags]

Flags:
  --control-plane ADDR    the control plane's gRPC port, host:port (env MESHLET_CONTROL_PLANE);
                          its built-in CA issues the SVID
  --namespace NS          the workload's namespace (default default)
  --service-account SA    the workload's service account (required with the CA)
  --trust-domain TD       the SPIFFE trust domain (default cluster.local)
  --token-file FILE       the CA token (the control plane's --ca-tokens-file lists them);
                          default the MESHLET_CA_TOKEN environment variable. The first
                          request carries it; renewals prove the current SVID instead
  --roots FILE            PEM roots that verify the control plane, held out of band (env
                          MESHLET_CONTROL_PLANE_ROOTS; for a control plane on loopback, the
                          default: its default state directory's ca/root-cert.pem)
  --control-plane-id ID   the SPIFFE ID the control plane must prove (default
                          spiffe://<trust domain>/ns/istio-system/sa/meshlet-controlplane)
  --ttl D                 the SVID lifetime to ask for (default: the CA's; it may shorten it)
  --spiffe-socket ADDR    take the SVID from a SPIFFE Workload API (SPIRE's agent), e.g.
                          unix:///run/spire/agent/public/api.sock, instead of the CA;
                          with --service-account, the SVID of that identity (else the
                          first offered). bundle.pem is then its bundle, plus --roots
  --out DIR               where to write the files (required; made 0700 if missing)
  --once                  write the files once and exit
  --wait D                how long to wait for the first SVID (default 1m)

The files are rewritten on every rotation (at half of the SVID's lifetime), each
to a temporary file in DIR renamed over the old one: bundle.pem, then key.pem,
then cert.pem, back to back. A reader that reads cert.pem and key.pem between
those two renames gets a mismatched pair, which gRPC's file_watcher refuses; it
keeps its current pair and reads again at its next refresh. The agent exits 0
on SIGINT or SIGTERM, and 1 when it gets no first SVID.
`

// agentPoll is how often the agent looks for a rotated SVID in its
// source: a pointer compare, which costs nothing.
const agentPoll = 200 * time.Millisecond

type agentFlags struct {
	controlPlane, namespace, serviceAccount, trustDomain string
	tokenFile, roots, cpID, spiffeSocket, out            string
	ttl, wait                                            time.Duration
	once                                                 bool
}

// agent runs "meshctl agent".
func (c *cli) agent(ctx context.Context, args []string) int {
	fs := flag.NewFlagSet("meshctl agent", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var f agentFlags
	fs.StringVar(&f.controlPlane, "control-plane", os.Getenv(mesh.EnvControlPlane), "")
	fs.StringVar(&f.namespace, "namespace", wire.DefaultNamespace, "")
	fs.StringVar(&f.serviceAccount, "service-account", "", "")
	fs.StringVar(&f.trustDomain, "trust-domain", wire.DefaultTrustDomain, "")
	fs.StringVar(&f.tokenFile, "token-file", "", "")
	fs.StringVar(&f.roots, "roots", os.Getenv(mesh.EnvControlPlaneRoots), "")
	fs.StringVar(&f.cpID, "control-plane-id", "", "")
	fs.DurationVar(&f.ttl, "ttl", 0, "")
	fs.StringVar(&f.spiffeSocket, "spiffe-socket", "", "")
	fs.StringVar(&f.out, "out", "", "")
	fs.BoolVar(&f.once, "once", false, "")
	fs.DurationVar(&f.wait, "wait", time.Minute, "")
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(c.stdout, agentUsage)
		return exitOK
	} else if err != nil {
		return c.subUsageError(agentUsage, "agent: %v", err)
	}
	var problems []string
	if fs.NArg() > 0 {
		problems = append(problems, fmt.Sprintf("unexpected arguments %q (every setting is a flag)", fs.Args()))
	}
	if f.out == "" {
		problems = append(problems, "--out is required (the directory of cert.pem, key.pem and bundle.pem)")
	}
	if f.wait <= 0 {
		problems = append(problems, fmt.Sprintf("--wait %s: want a positive duration", f.wait))
	}
	td, err := spiffeid.TrustDomainFromString(f.trustDomain)
	if err != nil {
		problems = append(problems, fmt.Sprintf("--trust-domain %q: %v", f.trustDomain, err))
	}
	var id spiffeid.ID
	if f.spiffeSocket == "" {
		switch {
		case f.controlPlane == "":
			problems = append(problems, "--control-plane is required (or set "+mesh.EnvControlPlane+"), or --spiffe-socket for SPIRE")
		case f.serviceAccount == "":
			problems = append(problems, "--service-account is required")
		case err == nil:
			if id, err = spiffeid.FromSegments(td, "ns", f.namespace, "sa", f.serviceAccount); err != nil {
				problems = append(problems, fmt.Sprintf("--namespace %q --service-account %q: %v", f.namespace, f.serviceAccount, err))
			}
		}
		if f.ttl < 0 {
			problems = append(problems, fmt.Sprintf("--ttl %s: want a positive duration", f.ttl))
		}
	} else {
		if f.tokenFile != "" || f.ttl != 0 {
			problems = append(problems, "--token-file and --ttl are for the control plane's CA, not --spiffe-socket")
		}
		if f.serviceAccount != "" && err == nil {
			if id, err = spiffeid.FromSegments(td, "ns", f.namespace, "sa", f.serviceAccount); err != nil {
				problems = append(problems, fmt.Sprintf("--namespace %q --service-account %q: %v", f.namespace, f.serviceAccount, err))
			}
		}
	}
	if len(problems) > 0 {
		return c.subUsageError(agentUsage, "agent: %s", strings.Join(problems, "; "))
	}

	log := slog.New(slog.NewTextHandler(c.stderr, nil))
	if err := os.MkdirAll(f.out, 0o700); err != nil {
		return c.fail(fmt.Errorf("agent: --out: %w", err))
	}
	var extra []*x509.Certificate // added to bundle.pem
	if f.roots != "" {
		if extra, err = certfile.Read(f.roots); err != nil {
			return c.fail(fmt.Errorf("agent: --roots: %w", err))
		}
	}

	wait, cancel := context.WithTimeout(ctx, f.wait)
	var src security.Source
	var closeSrc func()
	if f.spiffeSocket != "" {
		var ws *security.WorkloadAPISource
		opts := []security.WorkloadAPIOption{security.WithSocketAddr(f.spiffeSocket), security.WithLogger(log)}
		if !id.IsZero() {
			// The Workload API may offer this process several SVIDs.
			opts = append(opts, security.WithExpectedID(id))
		}
		ws, err = security.NewWorkloadAPISource(wait, opts...)
		src, closeSrc = ws, func() { ws.Close() }
	} else {
		src, closeSrc, err = f.caSource(wait, id, td, extra, log)
	}
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return exitOK // told to stop before the first SVID
		}
		return c.fail(fmt.Errorf("agent: %w", err))
	}
	defer closeSrc()

	w := &svidWriter{dir: f.out, extraRoots: extra, log: log}
	if err := w.update(src); err != nil {
		return c.fail(fmt.Errorf("agent: %w", err))
	}
	if f.once {
		return exitOK
	}
	t := time.NewTicker(agentPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("meshctl agent: stopping", "out", f.out)
			return exitOK
		case <-t.C:
		}
		if err := w.update(src); err != nil {
			// The files on disk are still the last good ones; try again.
			log.Error("meshctl agent: cannot write the rotated SVID; retrying", "out", f.out, "error", err)
		}
	}
}

// caSource gets the SVID from the control plane's built-in CA: the first
// request over TLS that verifies the control plane, with the token;
// renewals over mTLS with the SVID being renewed.
func (f *agentFlags) caSource(ctx context.Context, id spiffeid.ID, td spiffeid.TrustDomain, roots []*x509.Certificate, log *slog.Logger) (security.Source, func(), error) {
	from := f.roots
	if len(roots) == 0 && localtrust.Loopback(f.controlPlane) {
		// As the library: a control plane on this host with default flags
		// keeps its root here, which only this user (or root) can write.
		if dir, err := localtrust.DefaultStateDir(); err == nil {
			if r, err := certfile.Read(localtrust.CARootPath(dir)); err == nil {
				roots, from = r, localtrust.CARootPath(dir)+" (the default state directory of a control plane on this host)"
			}
		}
	}
	if len(roots) == 0 {
		return nil, nil, fmt.Errorf("no roots to verify the control plane at %s with: give --roots (or %s) the control plane's root certificate; it logs the file at start (%s)",
			f.controlPlane, mesh.EnvControlPlaneRoots, localtrust.CARootPath("<state dir>"))
	}
	cpID := f.cpID
	if cpID == "" {
		cpID = wire.ControlPlaneID(td.Name(), wire.DefaultRootNamespace)
	}
	cp, err := spiffeid.FromString(cpID)
	if err != nil {
		return nil, nil, fmt.Errorf("--control-plane-id %q: %w", cpID, err)
	}
	token := os.Getenv(mesh.EnvCAToken)
	if f.tokenFile != "" {
		data, err := os.ReadFile(f.tokenFile)
		if err != nil {
			return nil, nil, fmt.Errorf("--token-file: %w", err)
		}
		token = strings.TrimSpace(string(data))
		if token == "" {
			return nil, nil, fmt.Errorf("--token-file %s is empty", f.tokenFile)
		}
	}

	bundle := x509bundle.FromX509Authorities(td, roots)
	var holder svidHolder // the renewal connection's, once there is an SVID
	boot, err := grpc.NewClient(f.controlPlane, grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(cp)))))
	if err != nil {
		return nil, nil, fmt.Errorf("--control-plane %q: %w", f.controlPlane, err)
	}
	renew, err := grpc.NewClient(f.controlPlane, grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.MTLSClientConfig(&holder, bundle, tlsconfig.AuthorizeID(cp)))))
	if err != nil {
		boot.Close()
		return nil, nil, fmt.Errorf("--control-plane %q: %w", f.controlPlane, err)
	}
	ca, err := security.NewCASource(ctx, security.CAConfig{Conn: boot, RenewConn: renew, Token: token, ID: id, TTL: f.ttl, Roots: bundle, Log: log})
	if err != nil {
		boot.Close()
		renew.Close()
		switch status.Code(err) {
		case codes.Unauthenticated, codes.PermissionDenied:
			return nil, nil, fmt.Errorf("the control plane's CA at %s refused %s: %w (give the agent its token: --token-file or %s; the control plane's --ca-tokens-file lists them)",
				f.controlPlane, id, err, mesh.EnvCAToken)
		}
		return nil, nil, fmt.Errorf("no SVID for %s from the control plane's CA at %s: %w (the control plane %s is verified with %s)", id, f.controlPlane, err, cp, from)
	}
	holder.Store(ca)
	return ca, func() { ca.Close(); boot.Close(); renew.Close() }, nil
}

// svidHolder is an x509svid.Source that is set once the first SVID is
// there.
type svidHolder struct {
	atomic.Pointer[security.CASource]
}

func (h *svidHolder) GetX509SVID() (*x509svid.SVID, error) {
	src := h.Load()
	if src == nil {
		return nil, errors.New("meshctl agent: no SVID yet")
	}
	return src.GetX509SVID()
}

// svidWriter writes a source's SVID and bundle into dir when they change.
type svidWriter struct {
	dir        string
	extraRoots []*x509.Certificate
	log        *slog.Logger

	leaf   *x509.Certificate // of the files on disk
	bundle []byte
}

// update writes the files if the source's SVID or bundle is not the one
// on disk.
func (w *svidWriter) update(src security.Source) error {
	svid, err := src.GetX509SVID()
	if err != nil {
		return err
	}
	b, err := src.GetX509BundleForTrustDomain(svid.ID.TrustDomain())
	if err != nil {
		return err
	}
	roots := slices.Clone(b.X509Authorities())
	for _, r := range w.extraRoots {
		if !slices.ContainsFunc(roots, r.Equal) {
			roots = append(roots, r)
		}
	}
	bundlePEM := certfile.Encode(roots)
	leaf := svid.Certificates[0]
	if w.leaf != nil && w.leaf.Equal(leaf) && bytes.Equal(w.bundle, bundlePEM) {
		return nil
	}
	certPEM, keyPEM, err := svid.Marshal()
	if err != nil {
		return err
	}
	cert, key, bundle := svidPaths(w.dir)
	// The bundle first, so that peers with a new root are trusted before
	// the certificate that chains to it is shown; then the pair, back to
	// back.
	if !bytes.Equal(w.bundle, bundlePEM) {
		if err := writeFileAtomic(bundle, bundlePEM, 0o644); err != nil {
			return err
		}
		w.bundle = bundlePEM
	}
	if w.leaf == nil || !w.leaf.Equal(leaf) {
		// Both written and synced before either is renamed, so that the
		// two renames follow each other within microseconds.
		keyTmp, err := writeTemp(key, keyPEM, 0o600)
		if err != nil {
			return err
		}
		defer os.Remove(keyTmp)
		certTmp, err := writeTemp(cert, certPEM, 0o644)
		if err != nil {
			return err
		}
		defer os.Remove(certTmp)
		if err := os.Rename(keyTmp, key); err != nil {
			return err
		}
		if err := os.Rename(certTmp, cert); err != nil {
			return err
		}
		what := "rotated SVID"
		if w.leaf == nil {
			what = "first SVID"
		}
		w.leaf = leaf
		w.log.Info("meshctl agent: wrote "+what, "id", svid.ID.String(), "serial", leaf.SerialNumber.String(),
			"expires", leaf.NotAfter.UTC().Format(time.RFC3339), "out", w.dir)
	}
	return nil
}
