// Package grpcxds links gRPC-Go's own xDS client and server
// (google.golang.org/grpc/xds) into package mesh. Import it for its side
// effect:
//
//	import _ "github.com/meshlet/meshlet/mesh/grpcxds"
//
// Then mesh.WithGRPCGoXDS makes Mesh.Dial use gRPC-Go's xDS client,
// "xds:///host:port" targets dial through it, and mesh.WithXDSServer makes
// NewGRPCServer return gRPC-Go's xDS server. That is the standard client
// that other languages also use against the same control plane.
//
// meshlet's native gRPC path, the default, needs none of it. A program
// that does not import this package does not link gRPC-Go's xDS stack,
// which costs about 10 MiB of resident memory at initialisation alone
// (bench/rss).
package grpcxds
