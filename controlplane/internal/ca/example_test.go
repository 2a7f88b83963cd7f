package ca_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/meshlet/meshlet/controlplane/internal/ca"
	"github.com/meshlet/meshlet/internal/capb"
)

// A CA with an in-memory root, served on loopback, issues an SVID to a
// workload that holds a token for its identity.
func Example() {
	authority, err := ca.New(ca.Config{
		Tokens: map[string]ca.Identity{"s3cret": {Namespace: "default", ServiceAccount: "reviews"}},
		Log:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := grpc.NewServer() // use TLS outside examples: tokens travel in it
	authority.Register(srv)
	go srv.Serve(lis)
	defer srv.Stop()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cc.Close()

	// The workload: a key, and a CSR for its own SPIFFE ID.
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	id, _ := url.Parse("spiffe://cluster.local/ns/default/sa/reviews")
	csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", "Bearer s3cret")
	resp, err := capb.NewCertificateAuthorityClient(cc).Sign(ctx, &capb.SignRequest{Csr: csr, TtlSeconds: 3600})
	if err != nil {
		fmt.Println(err)
		return
	}

	svidID, _, err := x509svid.ParseAndVerify(resp.CertChain, x509bundle.FromX509Authorities(authority.TrustDomain(), authority.Bundle()))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(svidID)
	// Output: spiffe://cluster.local/ns/default/sa/reviews
}
