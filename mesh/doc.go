// Package mesh is the entry point for services: it puts a Go process in the
// mesh, with no sidecar. A service joins with New, then gets standard gRPC
// types from it: a *grpc.ClientConn whose routing, load balancing, timeouts
// and retries follow the control plane's Istio config (meshlet's own data
// plane does the work in-process, through gRPC-Go's public resolver, LB
// policy and interceptor APIs), and a server that registers itself with
// the control plane while it serves and drains before it stops.
//
// The shortest use, for a gRPC caller:
//
//	m, err := mesh.New(ctx, mesh.WithService("productpage"), mesh.WithControlPlane("127.0.0.1:15010"))
//	if err != nil { ... }
//	defer m.Close()
//	cc, err := m.Dial("reviews:9080") // reviews.default.svc.cluster.local:9080
//	client := reviewspb.NewReviewsClient(cc)
//
// and for a server:
//
//	m, err := mesh.New(ctx, mesh.WithService("reviews"), mesh.WithLabels(map[string]string{"version": "v2"}))
//	srv, err := m.NewGRPCServer(mesh.WithServicePort(9080))
//	reviewspb.RegisterReviewsServer(srv, impl)
//	go srv.Serve(lis)
//	...
//	srv.GracefulStop() // leaves callers' endpoint sets first, then stops
//
// Plain net/http gets the same: HTTPClient and HTTPTransport route
// requests by the same config, through the same data plane, and
// NewHTTPServer registers an http.Handler, serves it with the workload's
// mTLS identity and enforces AuthorizationPolicy. A process holds one xDS
// stream to the control plane, whatever it uses.
//
// The control plane's address comes from WithControlPlane or the
// MESHLET_CONTROL_PLANE environment variable. The connection to it is TLS,
// verified against roots the workload holds out of band
// (WithControlPlaneRoots, or MESHLET_CONTROL_PLANE_ROOTS naming the
// control plane's root file; a control plane in the same process needs
// neither); after the first certificate request, which carries the
// workload's token, it is mTLS with the workload's own SVID.
//
// gRPC-Go's own xDS client and server remain available: import
// github.com/meshlet/meshlet/mesh/grpcxds, then WithGRPCGoXDS (or an
// "xds:///" target) and WithXDSServer use them. meshlet builds their
// bootstrap in-process; when GRPC_XDS_BOOTSTRAP or
// GRPC_XDS_BOOTSTRAP_CONFIG is set, gRPC-Go's is used instead.
//
// Transport security follows the control plane. Clients use TLS where the
// cluster carries a TLS context, checking the server's SPIFFE ID against
// the cluster's SANs, and plaintext where it does not. Servers, gRPC and HTTP alike,
// follow their server Listener through meshlet's own xDS client: they
// serve mTLS with the workload's identity, take plaintext only while the
// Listener is PERMISSIVE, and check AuthorizationPolicy on every request.
// WithXDSServer makes a gRPC server gRPC-Go's xDS server instead.
package mesh
