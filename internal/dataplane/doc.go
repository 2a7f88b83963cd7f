// Package dataplane is meshlet's transport-neutral data plane: it follows
// the targets a process calls through meshlet's own xDS client (resolver)
// and turns a request into a decision: the route, the cluster, the
// endpoint, the timeout and whether to retry. The HTTP RoundTripper and
// the gRPC resolver, LB policy and interceptors in package mesh are thin
// adapters over it, so both transports route, balance, time out and
// retry alike from the same config, and policy plugs in here once.
//
// A Core holds one resolver.Client. A Host follows one client Listener
// (host:port) and its routes; a Cluster follows one cluster, its
// endpoints and its balancer. A Call is one request's plan: its route,
// cluster, hash and retries; each attempt picks an endpoint it has not
// tried and reports how it went as an Outcome, which feeds outlier
// detection and the retry decision.
package dataplane
