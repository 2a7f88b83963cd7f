package resolver_test

import (
	"strings"
	"testing"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/type/http/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/resolver"
)

// serverListenerWith is serverListener with its HttpConnectionManager
// changed by f.
func serverListenerWith(t *testing.T, f func(h *hcmv3.HttpConnectionManager)) *listenerv3.Listener {
	t.Helper()
	l := serverListener(t)
	fc := l.FilterChains[0]
	h := &hcmv3.HttpConnectionManager{}
	if err := fc.Filters[0].GetTypedConfig().UnmarshalTo(h); err != nil {
		t.Fatal(err)
	}
	f(h)
	fc.Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, h)}
	return l
}

func TestDecodeServerPathNormalization(t *testing.T) {
	type paths struct {
		normalize, merge bool
		escaped          resolver.EscapedSlashesAction
	}
	tests := []struct {
		name string
		f    func(h *hcmv3.HttpConnectionManager)
		want paths
	}{
		{"unset: Envoy's defaults", func(*hcmv3.HttpConnectionManager) {}, paths{}},
		{"meshlet's control plane", func(h *hcmv3.HttpConnectionManager) {
			h.NormalizePath = wrapperspb.Bool(true)
			h.MergeSlashes = true
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD
		}, paths{true, true, resolver.UnescapeEscapedSlashes}},
		{"keep unchanged", func(h *hcmv3.HttpConnectionManager) {
			h.NormalizePath = wrapperspb.Bool(true)
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_KEEP_UNCHANGED
		}, paths{true, false, resolver.KeepEscapedSlashes}},
		{"reject", func(h *hcmv3.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_REJECT_REQUEST
		}, paths{false, false, resolver.RejectEscapedSlashes}},
		{"redirect", func(h *hcmv3.HttpConnectionManager) {
			h.MergeSlashes = true
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT
		}, paths{false, true, resolver.RedirectEscapedSlashes}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := resolver.Decode(serverListenerWith(t, tt.f))
			if err != nil {
				t.Fatal(err)
			}
			l := got.(resolver.Listener)
			if g := (paths{l.NormalizePath, l.MergeSlashes, l.EscapedSlashes}); g != tt.want {
				t.Errorf("got %+v, want %+v", g, tt.want)
			}
		})
	}
}

func TestDecodeServerPathNormalizationRefused(t *testing.T) {
	tests := []struct {
		name string
		f    func(h *hcmv3.HttpConnectionManager)
		want []string
	}{
		{"unknown escaped slashes action", func(h *hcmv3.HttpConnectionManager) {
			h.PathWithEscapedSlashesAction = hcmv3.HttpConnectionManager_PathWithEscapedSlashesAction(9)
		}, []string{"path_with_escaped_slashes_action", "unknown value 9"}},
		{"path_normalization_options", func(h *hcmv3.HttpConnectionManager) {
			h.PathNormalizationOptions = &hcmv3.HttpConnectionManager_PathNormalizationOptions{
				ForwardingTransformation: &httpv3.PathTransformation{},
			}
		}, []string{"filter_chains[0].filters[0]", "path_normalization_options is not supported by meshlet"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := resolver.Decode(serverListenerWith(t, tt.f))
			if err == nil {
				t.Fatal("Decode accepted it")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestEscapedSlashesActionString(t *testing.T) {
	for a, want := range map[resolver.EscapedSlashesAction]string{
		resolver.KeepEscapedSlashes:     "KEEP_UNCHANGED",
		resolver.RejectEscapedSlashes:   "REJECT_REQUEST",
		resolver.RedirectEscapedSlashes: "UNESCAPE_AND_REDIRECT",
		resolver.UnescapeEscapedSlashes: "UNESCAPE_AND_FORWARD",
		7:                               "EscapedSlashesAction(7)",
	} {
		if got := a.String(); got != want {
			t.Errorf("%d: got %q, want %q", int(a), got, want)
		}
	}
}
