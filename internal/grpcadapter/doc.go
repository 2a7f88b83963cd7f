// Package grpcadapter is meshlet's native gRPC client path: a thin layer
// over the data plane (internal/dataplane) on gRPC-Go's public APIs.
//
//   - A resolver for the "meshlet" scheme follows a host through the data
//     plane and hands gRPC every endpoint of every cluster its routes
//     send to, each with its cluster's TLS settings as an attribute.
//   - Transport credentials read those attributes: mTLS checking the
//     server's SPIFFE ID against the cluster's SANs, or plaintext.
//   - Client interceptors match the route (the method as path, outgoing
//     metadata as headers), choose the cluster, and apply the route's
//     timeout and retries; a stream is retried only before its first
//     response message, as gRPC-Go does.
//   - An LB policy keeps one SubConn per cluster and endpoint, and its
//     picker asks the call's data-plane plan for the endpoint, so gRPC
//     gets the data plane's balancers, outlier ejection and locality
//     failover, and retries skip hosts already tried.
package grpcadapter
