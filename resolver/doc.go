// Package resolver is meshlet's own xDS client and the service view built
// from it. gRPC traffic uses gRPC-Go's xDS client; plain HTTP traffic and
// server-side policy use this one, so that both follow the same resources
// from the same control plane.
//
// A Client holds one ADS stream (state of the world) to a control plane and
// subscribes to Listeners, RouteConfigurations, Clusters and
// ClusterLoadAssignments by name for the watches registered on it. It
// validates every resource, ACKs good updates and NACKs bad ones with a
// reason (which the control plane shows in /debug/clients), and keeps the
// last good value of every resource, also while the control plane is away:
// it reconnects with exponential backoff and jitter, fails over between
// control planes, and subscribes again with the versions it holds.
//
// On the wire it follows gRPC-Go's xDS client. Each request of a type
// carries every name watched, the last version accepted and the nonce of
// the last response on the stream; a new stream starts with the versions
// held and no nonce, since nonces belong to a stream. A rejected response
// is NACKed with a google.rpc.Status naming each bad resource and the
// reason; the good resources of it are still taken. A control plane that
// answers a NACK with the same version again has its repeats NACKed after
// the backoff delay, not in a tight loop.
//
// A resource does not exist (ErrResourceNotFound) when the control plane
// says so or stays silent. For Listeners and Clusters, whose responses
// hold every name asked for that exists, a response that leaves out a
// name received before means it was removed, at once. It means that a
// name never received does not exist when the response certainly answers
// a request for it (the control plane answers only requests that carry
// its last nonce), so an unknown host is known one round trip after it is
// first watched. A name watched while the answer to an earlier request
// was on its way is only suspected when that answer leaves it out: the
// client's ACK names it, and it does not exist once the next answer also
// leaves it out, or 300ms after that ACK went out with no answer naming
// it. (gRPC-Go ignores such omissions and waits for its 15s timer.) For
// RouteConfigurations and ClusterLoadAssignments a response that leaves
// out a name says nothing. Any name with no answer for 15s
// (WithResourceNotFoundTimeout) on a live stream does not exist.
// Incremental (delta) xDS is not used.
//
// A state-of-the-world response holds every resource of its type, changed
// or not. A resource whose serialized bytes equal those of the value in
// force is not decoded again: its name is read from its name field alone
// (field 1 of all four types) and the cached value stays: a response of
// 1,000 ClusterLoadAssignments of which 10% changed takes several times
// less time, and about 7 times fewer allocations, than decoding all of it
// (BenchmarkEndpointsResponse). A changed resource is decoded and validated
// as before, except that in a changed ClusterLoadAssignment each client
// reuses the converted endpoint of every LbEndpoint whose bytes were in
// its last good decode of that name: 10 changed endpoints of 100 cost 10
// unmarshals, not 100 (BenchmarkDecodeEndpointsChurn). Anything it would
// refuse is decoded in full, so errors are the same. TypeStats.Unchanged
// counts the skipped resources. The client keeps, per resource, its bytes
// (to compare, and for Dump) and its converted value, never the decoded
// Envoy proto.
//
// Values are meshlet's own types (Listener, RouteConfig, Cluster,
// Endpoints), not Envoy protos. MatchRoute and PickWeightedCluster apply a
// RouteConfig to a request, and Authorize a server Listener's RBAC
// filters, for any transport.
//
// The shortest use follows a client target "host:port" down to its
// endpoints:
//
//	c, err := resolver.New(ctx, resolver.WithServers("127.0.0.1:15010"),
//		resolver.WithNode(resolver.Node{Namespace: "default", WorkloadName: "productpage"}))
//	if err != nil {
//		return err
//	}
//	defer c.Close()
//	cancel := c.WatchListener("reviews.default.svc.cluster.local:9080", func(l resolver.Listener, err error) {
//		// then WatchRouteConfig(l.RouteConfigName, ...), MatchRoute,
//		// WatchCluster(PickWeightedCluster(...)), WatchEndpoints(...)
//	})
//	defer cancel()
package resolver
