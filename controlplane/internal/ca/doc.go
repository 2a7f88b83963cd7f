// Package ca is the control plane's built-in certificate authority. It
// issues X.509 SVIDs (SPIFFE identities of the form
// spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>) to workloads
// over the meshlet.ca.v1.CertificateAuthority gRPC service, as istiod does
// for Istio.
//
// A workload authenticates with a bearer token ("authorization: Bearer
// <token>" request metadata). Each token is bound to one identity, and the
// CA signs a CSR only for that identity. Tokens come from a YAML file and
// from AddToken:
//
//	tokens:
//	- token: 4f0c...e1
//	  namespace: default
//	  serviceAccount: reviews
//
// The root is generated at first start and kept in Config.Dir, or loaded
// from PEM files (a root, or an intermediate followed by its chain up to
// and including the root). A root that cannot be used is an error at New,
// never a panic or a silent replacement.
//
// The CA signs ECDSA P-256 and P-384 keys and RSA keys of 2048 to 4096
// bits, and refuses any other key with InvalidArgument. An SVID lives
// Config.DefaultTTL, or what its request asks for up to Config.MaxTTL,
// which is DefaultTTL unless set: the lifetime the operator chose is the
// longest a workload gets.
//
// The shortest correct use:
//
//	authority, err := ca.New(ca.Config{Dir: "/var/lib/meshlet/ca", TokensFile: "tokens.yaml"})
//	if err != nil {
//		return err
//	}
//	srv := grpc.NewServer(grpc.Creds(serverTLS))
//	authority.Register(srv)
//
// CA has no goroutines and needs no Close. All its methods are safe for
// concurrent use.
package ca
