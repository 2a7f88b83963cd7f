package translate_test

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
)

// The clients Unsupported knows are judged; meshlet's resolver (which
// does everything translate emits), Envoy and gRPCs it does not know are
// not, and xdsserver skips their streams.
func TestJudges(t *testing.T) {
	for ua, want := range map[string]bool{
		"gRPC Go":                  true,
		"gRPC Java":                true,
		"gRPC Node":                true,
		"gRPC C-core linux python": true,
		"gRPC Python":              true,
		wire.ResolverUserAgent:     false,
		"envoy":                    false,
		"gRPC Rust":                false,
		"":                         false,
	} {
		if got := translate.Judges(&corev3.Node{UserAgentName: ua}); got != want {
			t.Errorf("Judges(%q) = %v, want %v", ua, got, want)
		}
	}
}
