package wire_test

import (
	"testing"

	"github.com/meshlet/meshlet/internal/wire"
)

// User agents as the clients send them (docs/xds-compatibility.md).
func TestClientKind(t *testing.T) {
	for ua, want := range map[string]string{
		wire.ResolverUserAgent:          wire.ClientMeshlet,
		"gRPC Go":                       wire.ClientGo,
		"gRPC Java":                     wire.ClientJava,
		"gRPC Node":                     wire.ClientNode,
		"gRPC Node.js":                  wire.ClientNode,
		"gRPC C-core linux python":      wire.ClientCore,
		"gRPC Python":                   wire.ClientCore,
		"gRPC C#":                       wire.ClientCore,
		"gRPC Rust":                     wire.ClientGRPC,
		"grpc-dotnet":                   wire.ClientGRPC,
		"envoy":                         wire.ClientOther,
		"":                              wire.ClientOther,
		"meshlet-resolver-but-not-ours": wire.ClientOther,
	} {
		if got := wire.ClientKind(ua); got != want {
			t.Errorf("ClientKind(%q) = %q, want %q", ua, got, want)
		}
	}
}
