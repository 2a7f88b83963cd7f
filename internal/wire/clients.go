package wire

import "strings"

// ResolverUserAgent is the user_agent_name of meshlet's own xDS client
// (package resolver) in its node.
const ResolverUserAgent = "meshlet-resolver"

// The xDS clients the control plane tells apart, by their node's
// user_agent_name (docs/xds-compatibility.md has the sources).
const (
	ClientMeshlet = "meshlet"   // meshlet's resolver
	ClientGo      = "grpc-go"   // gRPC-Go
	ClientCore    = "grpc-core" // gRPC C-core: C++, Python, Ruby, PHP, C#
	ClientJava    = "grpc-java" // grpc-java
	ClientNode    = "grpc-js"   // @grpc/grpc-js-xds
	ClientGRPC    = "grpc"      // another gRPC, by its user agent's prefix
	ClientOther   = "other"     // Envoy and the rest
)

// ClientKind sorts an xDS client by its node's user_agent_name into one
// of the Client kinds: a fixed set, so that what a client says cannot make
// metric labels grow without bound. gRPC C-core says "gRPC C-core
// <platform>[ <language>]"; Python's docs and tests also show "gRPC
// Python", which is taken as C-core too.
func ClientKind(userAgent string) string {
	switch {
	case userAgent == ResolverUserAgent:
		return ClientMeshlet
	case userAgent == "gRPC Go":
		return ClientGo
	case userAgent == "gRPC Java":
		return ClientJava
	case strings.HasPrefix(userAgent, "gRPC Node"):
		return ClientNode
	case strings.HasPrefix(userAgent, "gRPC C-core"), userAgent == "gRPC Python", userAgent == "gRPC C++", userAgent == "gRPC Ruby", userAgent == "gRPC PHP", userAgent == "gRPC C#":
		return ClientCore
	case strings.HasPrefix(userAgent, "gRPC"), strings.HasPrefix(userAgent, "grpc"):
		return ClientGRPC
	}
	return ClientOther
}
