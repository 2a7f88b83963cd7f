// Package security gives a workload its SPIFFE identity and the TLS
// configurations that use it.
//
// A Source is the workload's X.509 SVID and the trust bundles that verify its
// peers. There are three, each of which keeps itself current:
//
//   - NewWorkloadAPISource reads the SPIFFE Workload API (a SPIRE agent);
//   - NewFileSource reads PEM files (cert-manager, spiffe-helper) and re-reads
//     them when they change;
//   - NewCASource asks meshlet's built-in CA, in the control plane, and renews
//     at half-life.
//
// A Source is read on every TLS handshake, so a rotated SVID is used from the
// next connection on, and connections already open are left alone. It is
// used through:
//
//   - ServerTLSConfig and ClientTLSConfig: standard *tls.Config for net/http
//     and for gRPC's credentials.NewTLS;
//   - the "meshlet" gRPC certificate-provider plugin (RegisterProviderSource,
//     ProviderConfig), through which gRPC-Go's xDS credentials get the
//     identity named in the control plane's xDS resources;
//   - PermissiveCredentials: one gRPC server port for both mTLS and plaintext
//     clients, as Istio's PERMISSIVE mode;
//   - AuthorizeServer: a client's check of a server's subject alt names, as
//     gRPC-Go makes it.
//
// The shortest use, with files written by cert-manager:
//
//	src, err := security.NewFileSource(ctx, "/certs/tls.crt", "/certs/tls.key", "/certs/ca.crt")
//	if err != nil {
//		return err
//	}
//	defer src.Close()
//	// nil: any workload of src's trust domain may connect.
//	srv := &http.Server{Addr: ":8443", Handler: h, TLSConfig: security.ServerTLSConfig(src, nil)}
//	err = srv.ListenAndServeTLS("", "")
package security
