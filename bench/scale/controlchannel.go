//go:build linux

package main

// This file is the one place where the benchmark connects to the control
// plane's gRPC port (CA, registrations and xDS), and the only one that
// knows about credentials; it is bench/registrations' controlchannel.go
// without the CSR sample. The port serves TLS with a certificate from the
// control plane's own CA, which workloads verify against the CA's root,
// held out of band (the file in the control plane's state directory). A
// workload first asks the CA for an SVID over TLS that verifies the
// control plane (no token: the child runs with --ca-insecure-dev), then
// uses mTLS with that SVID for everything else. With -plaintext, the
// child runs with --insecure-plaintext-dev and every connection is
// plaintext.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/security"
)

// clientServiceAccount is the identity of the light xDS clients.
const clientServiceAccount = "bench-client"

// controlChannelArgs are the control plane's flags for the channel: its
// state directory (where its CA keeps the root) and, with plaintext, the
// insecure development mode.
func controlChannelArgs(stateDir string, plaintext bool) []string {
	args := []string{"--state-dir", stateDir, "--ca-insecure-dev"}
	if plaintext {
		args = append(args, "--insecure-plaintext-dev")
	}
	return args
}

// controlChannel holds the credentials of the connections to one control
// plane: per service account, mTLS with an SVID from its CA, or plaintext.
// Its methods are safe for concurrent use once newControlChannel returned.
type controlChannel struct {
	addr      string
	plaintext bool
	td        spiffeid.TrustDomain
	cpID      spiffeid.ID
	bundle    *x509bundle.Bundle                          // the CA's root, read from the state directory
	creds     map[string]credentials.TransportCredentials // by service account
	sources   []*security.CASource
}

// newControlChannel prepares the connections to the control plane at addr
// for the given service accounts (namespace benchNamespace). Over TLS it
// reads the CA's root from stateDir and gets one SVID per service account
// from the CA. Plaintext needs nothing.
func newControlChannel(ctx context.Context, addr, stateDir string, plaintext bool, serviceAccounts []string) (*controlChannel, error) {
	ch := &controlChannel{addr: addr, plaintext: plaintext, td: spiffeid.RequireTrustDomainFromString(wire.DefaultTrustDomain)}
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
		src, err := ch.newSVID(ctx, sa)
		if err != nil {
			ch.Close()
			return nil, err
		}
		ch.sources = append(ch.sources, src)
		ch.creds[sa] = credentials.NewTLS(tlsconfig.MTLSClientConfig(src, ch.bundle, tlsconfig.AuthorizeID(ch.cpID)))
	}
	return ch, nil
}

// newSVID does what a starting server does before it registers: a
// connection that verifies the control plane and presents nothing, and one
// CSR for ns/benchNamespace/sa/sa over it. The source renews until Close.
func (ch *controlChannel) newSVID(ctx context.Context, sa string) (*security.CASource, error) {
	id, err := spiffeid.FromSegments(ch.td, "ns", benchNamespace, "sa", sa)
	if err != nil {
		return nil, err
	}
	creds := credentials.NewTLS(tlsconfig.TLSClientConfig(ch.bundle, tlsconfig.AuthorizeID(ch.cpID)))
	boot, err := grpc.NewClient("passthrough:///"+ch.addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, fmt.Errorf("dial control plane %s: %w", ch.addr, err)
	}
	defer boot.Close()
	src, err := security.NewCASource(ctx, security.CAConfig{
		ID: id, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Conn: boot, Roots: ch.bundle,
	})
	if err != nil {
		return nil, fmt.Errorf("SVID for %s: %w", id, err)
	}
	return src, nil
}

// dialOptions are the options of a connection to the control plane with
// the identity of service account sa (which newControlChannel got an SVID
// for): each registration's, and each light xDS client's.
func (ch *controlChannel) dialOptions(sa string) []grpc.DialOption {
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

// dial opens the connection of one registering server of service account
// sa: every meshlet server process has its own connection to the control
// plane, so every registration gets one, and over TLS its own full
// handshake. The address is an IP:port; passthrough keeps gRPC from any
// name lookup.
func (ch *controlChannel) dial(sa string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+ch.addr, ch.dialOptions(sa)...)
}

// Close stops the SVID sources' renewals.
func (ch *controlChannel) Close() {
	for _, s := range ch.sources {
		s.Close()
	}
}
