// Package translate turns the validated mesh configuration (package model)
// and the live registry instances into the Envoy xDS v3 resources that
// gRPC-Go's xDS client and meshlet's own resolver consume.
//
// The resources have the shape istiod gives proxyless gRPC:
//
//   - a client Listener "<host>:<port>" per service port: an api_listener
//     whose HttpConnectionManager fetches the RouteConfiguration of the same
//     name over ADS;
//   - a RouteConfiguration "<host>:<port>" with one virtual host, whose
//     domains hold every name a caller may dial (always with the ":port"
//     form, which gRPC needs) and whose routes come from the VirtualService;
//   - EDS Clusters "outbound|<port>|<subset>|<host>", load-balanced as the
//     DestinationRule says, with its outlierDetection as istiod writes it;
//     a rule's model.LoadBalancerAnnotation puts wire.PeakEWMAPolicy first
//     in load_balancing_policy, for meshlet's resolver, ahead of the
//     policy gRPC clients use;
//   - a ClusterLoadAssignment per Cluster, grouped by locality, with a
//     weight on every locality (gRPC ignores a locality without one);
//   - a server Listener per xDS-enabled gRPC server address, named after
//     wire.ServerListenerTemplate, whose routes use NonForwardingAction.
//
// Security follows Istio's resources and SPIFFE identities
// (spiffe://<trust domain>/ns/<namespace>/sa/<service account>), with
// certificates from the certificate-provider instance wire.CertProviderInstance
// that every workload's bootstrap defines:
//
//   - a server whose PeerAuthentication mode is STRICT gets a
//     DownstreamTlsContext requiring a client certificate; PERMISSIVE and
//     DISABLE get none, and the server's fallback credentials take the
//     connection;
//   - a server's AuthorizationPolicies become RBAC HTTP filters before the
//     router: DENY first, then ALLOW;
//   - a Cluster gets an UpstreamTlsContext that checks the endpoints' SPIFFE
//     IDs when its DestinationRule says ISTIO_MUTUAL, or, with no tls
//     setting, when every endpoint is a meshlet server that accepts mTLS
//     (auto mTLS).
//
// Build is a pure function: the same Input gives the same Output, with
// every list sorted.
//
//	out, err := translate.Build(translate.Input{
//		Config:          cfg,
//		Instances:       instances, // live, ready registry instances
//		ServerAddresses: []string{"10.0.0.7:50051"},
//		Workloads: map[string]translate.Workload{ // from the servers' node metadata
//			"10.0.0.7:50051": {Namespace: "default", ServiceAccount: "ratings", Labels: labels},
//		},
//	})
//	if err != nil {
//		return err // the validator and the translator disagree: a bug
//	}
//	// put out.Listeners, out.Routes, out.Clusters and out.Endpoints into a
//	// new snapshot, with a new version.
package translate
