//go:build linux

package main

// This file is the one place where the benchmark itself talks to the
// control plane: it gets the plain service the SVID a meshlet workload of
// the same service account would get, over TLS that verifies the control
// plane against its CA's root (the file in its state directory), with
// the service's CA token.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/certfile"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/security"
)

// svidFiles are an SVID and its trust bundle as PEM files.
type svidFiles struct {
	cert, key, bundle string
}

// writeSVID gets an SVID for ns/default/sa/<sa> from the control plane at
// addr, whose state directory is stateDir, with token, and writes it into
// dir with the CA's root as the bundle.
func writeSVID(ctx context.Context, addr, stateDir, sa, token, dir string) (svidFiles, error) {
	files := svidFiles{cert: filepath.Join(dir, "svid.pem"), key: filepath.Join(dir, "svid-key.pem"), bundle: controlplane.CARootPath(stateDir)}
	td := spiffeid.RequireTrustDomainFromString(wire.DefaultTrustDomain)
	roots, err := certfile.Read(files.bundle)
	if err != nil {
		return files, fmt.Errorf("control plane's CA root: %w", err)
	}
	bundle := x509bundle.FromX509Authorities(td, roots)
	cpID := spiffeid.RequireFromString(wire.ControlPlaneID(wire.DefaultTrustDomain, wire.DefaultRootNamespace))
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(credentials.NewTLS(tlsconfig.TLSClientConfig(bundle, tlsconfig.AuthorizeID(cpID)))))
	if err != nil {
		return files, err
	}
	defer conn.Close()
	id, err := spiffeid.FromSegments(td, "ns", "default", "sa", sa)
	if err != nil {
		return files, err
	}
	src, err := security.NewCASource(ctx, security.CAConfig{Conn: conn, Roots: bundle, Token: token, ID: id, Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		return files, fmt.Errorf("SVID for %s: %w", id, err)
	}
	defer src.Close()
	svid, err := src.GetX509SVID()
	if err != nil {
		return files, err
	}
	cert, key, err := svid.Marshal()
	if err != nil {
		return files, err
	}
	if err := os.WriteFile(files.cert, cert, 0o600); err != nil {
		return files, err
	}
	return files, os.WriteFile(files.key, key, 0o600)
}
