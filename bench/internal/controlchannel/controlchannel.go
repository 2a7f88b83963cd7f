// Package controlchannel is the one place where the benchmark programs
// connect to the control plane's gRPC port (CA, registrations and xDS),
// and the only one that knows about credentials. The port serves TLS with
// a certificate from the control plane's own CA, which workloads verify
// against the CA's root, held out of band (the file in the control plane's
// state directory). A workload first asks the CA for an SVID over TLS that
// verifies the control plane (no token: the child runs with
// --ca-insecure-dev), then uses mTLS with that SVID for everything else.
// With plaintext, the child runs with --insecure-plaintext-dev and every
// connection is plaintext.
package controlchannel

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/meshlet/meshlet/bench/internal/parallel"
	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/security"
)

// Args are the control plane's flags for the channel: its state directory
// (where its CA keeps the root) and, with plaintext, the insecure
// development mode.
func Args(stateDir string, plaintext bool) []string {
	args := []string{"--state-dir", stateDir, "--ca-insecure-dev"}
	if plaintext {
		args = append(args, "--insecure-plaintext-dev")
	}
	return args
}

// Channel holds the credentials of the connections to one control plane:
// per service account, mTLS with an SVID from its CA, or plaintext. Its
// methods are safe for concurrent use once New returned.
type Channel struct {
	addr      string
	plaintext bool
	namespace string
	td        spiffeid.TrustDomain
	cpID      spiffeid.ID
	bundle    *x509bundle.Bundle                          // the CA's root, read from the state directory
	creds     map[string]credentials.TransportCredentials // by service account
	sources   []*security.CASource
	csr       []time.Duration // each SVID's dial, handshake and CSR
}

// New prepares the connections to the control plane at addr for the
// given service accounts of namespace. Over TLS it reads the CA's root
// from stateDir and gets one SVID per service account from the CA, each
// over its own server-authenticated connection, as a starting server
// does; it times each of those. Plaintext needs nothing.
func New(ctx context.Context, addr, stateDir string, plaintext bool, namespace string, serviceAccounts []string) (*Channel, error) {
	ch := &Channel{addr: addr, plaintext: plaintext, namespace: namespace, td: spiffeid.RequireTrustDomainFromString(wire.DefaultTrustDomain)}
	if plaintext {
		return ch, nil
	}
	ch.cpID = spiffeid.RequireFromString(wire.ControlPlaneID(wire.DefaultTrustDomain, wire.DefaultRootNamespace))
	roots, err := certfile.Read(controlplane.CARootPath(stateDir))
	if err != nil {
		return nil, fmt.Errorf("control plane's CA root: %w", err)
	}
	ch.bundle = x509bundle.FromX509Authorities(ch.td, roots)
	ch.creds = map[string]credentials.TransportCredentials{}
	for _, sa := range serviceAccounts {
		start := time.Now()
		src, err := ch.newSVID(ctx, sa)
		if err != nil {
			ch.Close()
			return nil, err
		}
		ch.csr = append(ch.csr, time.Since(start))
		ch.sources = append(ch.sources, src)
		ch.creds[sa] = credentials.NewTLS(tlsconfig.MTLSClientConfig(src, ch.bundle, tlsconfig.AuthorizeID(ch.cpID)))
	}
	return ch, nil
}

// Addr is the control plane's address.
func (ch *Channel) Addr() string { return ch.addr }

// newSVID does what a starting server does before it registers: a
// connection that verifies the control plane and presents nothing, and one
// CSR for ns/<namespace>/sa/sa over it. The source renews until Close.
func (ch *Channel) newSVID(ctx context.Context, sa string) (*security.CASource, error) {
	id, err := spiffeid.FromSegments(ch.td, "ns", ch.namespace, "sa", sa)
	if err != nil {
		return nil, err
	}
	var creds credentials.TransportCredentials
	cfg := security.CAConfig{ID: id, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if ch.plaintext {
		creds, cfg.InsecureTrustResponse = insecure.NewCredentials(), true
	} else {
		creds, cfg.Roots = credentials.NewTLS(tlsconfig.TLSClientConfig(ch.bundle, tlsconfig.AuthorizeID(ch.cpID))), ch.bundle
	}
	boot, err := grpc.NewClient("passthrough:///"+ch.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("dial control plane %s: %w", ch.addr, err)
	}
	defer boot.Close()
	cfg.Conn = boot
	src, err := security.NewCASource(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("SVID for %s: %w", id, err)
	}
	return src, nil
}

// DialOptions are the options of a connection to the control plane with
// the identity of service account sa (which New got an SVID for).
func (ch *Channel) DialOptions(sa string) []grpc.DialOption {
	creds := insecure.NewCredentials()
	if !ch.plaintext {
		creds = ch.creds[sa]
		if creds == nil {
			panic(fmt.Sprintf("bench: no SVID for service account %q", sa))
		}
	}
	return []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}

// Dial opens a connection of service account sa: every meshlet server
// process has its own connection to the control plane, so every
// registration gets one, and over TLS its own full handshake (no session
// is resumed: each tls.Config here has no session cache, as each server
// process would have its own). The address is an IP:port; passthrough
// keeps gRPC from any name lookup.
func (ch *Channel) Dial(sa string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+ch.addr, ch.DialOptions(sa)...)
}

// CSRTimes returns how long each of New's SVIDs took, first dial to SVID.
func (ch *Channel) CSRTimes() []time.Duration { return slices.Clone(ch.csr) }

// SampleCSRs makes n more CSRs for service account sa, at most
// concurrency at a time, each on its own new connection as a starting
// server's, and returns how long each took, first dial to SVID. It runs
// over TLS or plaintext, whichever the channel is.
func (ch *Channel) SampleCSRs(ctx context.Context, sa string, n, concurrency int) ([]time.Duration, error) {
	took := make([]time.Duration, n)
	err := parallel.ForEach(ctx, n, concurrency, func(i int) error {
		start := time.Now()
		src, err := ch.newSVID(ctx, sa)
		if err != nil {
			return err
		}
		took[i] = time.Since(start)
		src.Close()
		return nil
	})
	return took, err
}

// Close stops the SVID sources' renewals.
func (ch *Channel) Close() {
	for _, s := range ch.sources {
		s.Close()
	}
}
