package translate_test

import (
	"testing"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/meshlet/meshlet/controlplane/internal/translate"
)

// TestServerPathNormalization checks that a server Listener asks for
// paths normalized before authorization: dot segments removed, unreserved
// characters decoded, slashes merged and escaped slashes unescaped.
func TestServerPathNormalization(t *testing.T) {
	const addr = "10.0.0.1:8080"
	hcm, _ := listenerHCM(t, build(t, translate.Input{ServerAddresses: []string{addr}}), addr)
	if !hcm.GetNormalizePath().GetValue() {
		t.Error("normalize_path is not set")
	}
	if !hcm.GetMergeSlashes() {
		t.Error("merge_slashes is not set")
	}
	if got, want := hcm.GetPathWithEscapedSlashesAction(), hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD; got != want {
		t.Errorf("path_with_escaped_slashes_action is %v, want %v", got, want)
	}
}
