package resolver_test

import (
	"strings"
	"testing"
	"time"

	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/resolver"
)

func pct(n uint32, d typev3.FractionalPercent_DenominatorType) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: n, Denominator: d}
}

func fixedDelay(d time.Duration, p *typev3.FractionalPercent) *commonfaultv3.FaultDelay {
	return &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d)}, Percentage: p}
}

// decodeFault decodes a RouteConfiguration whose second route has f as
// its fault.
func decodeFault(t *testing.T, f *faultv3.HTTPFault) (*policy.Fault, error) {
	t.Helper()
	rc := routeConfig()
	rc.VirtualHosts[0].Routes[1].TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": mustAny(t, f)}
	v, err := resolver.Decode(rc)
	if err != nil {
		return nil, err
	}
	return v.(resolver.RouteConfig).VirtualHosts[0].Routes[1].Fault, nil
}

func TestDecodeFault(t *testing.T) {
	tests := []struct {
		name string
		in   *faultv3.HTTPFault
		want *policy.Fault
	}{
		{"delay, Istio's percentage", &faultv3.HTTPFault{Delay: fixedDelay(7*time.Second, pct(1000, typev3.FractionalPercent_MILLION))},
			&policy.Fault{Delay: 7 * time.Second, DelayPerMillion: 1000}},
		{"delay, Istio's percent", &faultv3.HTTPFault{Delay: fixedDelay(time.Second, pct(10, typev3.FractionalPercent_HUNDRED))},
			&policy.Fault{Delay: time.Second, DelayPerMillion: 100_000}},
		{"abort HTTP", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 555}, Percentage: pct(2000, typev3.FractionalPercent_TEN_THOUSAND)}},
			&policy.Fault{Abort: policy.Abort{HTTPStatus: 555}, AbortPerMillion: 200_000}},
		{"abort gRPC, no percentage", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 14}}},
			&policy.Fault{Abort: policy.Abort{GRPCStatus: codes.Unavailable, IsGRPC: true}}},
		{"over the whole", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: pct(200, typev3.FractionalPercent_HUNDRED)}},
			&policy.Fault{Abort: policy.Abort{HTTPStatus: 503}, AbortPerMillion: policy.PerMillion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeFault(t, tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("fault (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDecodeFaultRefused(t *testing.T) {
	abort503 := func() *faultv3.FaultAbort {
		return &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 503}, Percentage: pct(10, typev3.FractionalPercent_HUNDRED)}
	}
	tests := []struct {
		name string
		in   *faultv3.HTTPFault
		want string
	}{
		{"header delay", &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{FaultDelaySecifier: &commonfaultv3.FaultDelay_HeaderDelay_{HeaderDelay: &commonfaultv3.FaultDelay_HeaderDelay{}}}},
			"delay: only fixed_delay is supported by meshlet (header_delay is not)"},
		{"header abort", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HeaderAbort_{HeaderAbort: &faultv3.FaultAbort_HeaderAbort{}}}},
			"abort: only http_status and grpc_status are supported by meshlet (header_abort is not)"},
		{"max active faults", &faultv3.HTTPFault{Abort: abort503(), MaxActiveFaults: wrapperspb.UInt32(5)},
			"max_active_faults: not supported by meshlet"},
		{"upstream cluster", &faultv3.HTTPFault{Abort: abort503(), UpstreamCluster: "c"},
			"upstream_cluster: not supported by meshlet"},
		{"runtime key", &faultv3.HTTPFault{Abort: abort503(), AbortPercentRuntime: "k"},
			"abort_percent_runtime: not supported by meshlet"},
		{"grpc OK", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_GrpcStatus{GrpcStatus: 0}}},
			"abort.grpc_status: 0 is not a gRPC error status"},
		{"bad http status", &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{ErrorType: &faultv3.FaultAbort_HttpStatus{HttpStatus: 100}}},
			"violates Envoy's constraints"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeFault(t, tt.in)
			if err == nil {
				t.Fatal("Decode accepted it")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), `typed_per_filter_config["envoy.filters.http.fault"]`) {
				t.Errorf("error %q does not say %q, and where", err, tt.want)
			}
		})
	}
}

// TestDecodeListenerFault accepts the client Listener's empty fault
// filter, as istiod sends it, and refuses one that would fault every
// route.
func TestDecodeListenerFault(t *testing.T) {
	const name = "reviews.default.svc.cluster.local:9080"
	for _, tt := range []struct {
		fault *faultv3.HTTPFault
		want  string
	}{
		{&faultv3.HTTPFault{}, ""},
		{&faultv3.HTTPFault{Delay: fixedDelay(time.Second, pct(100, typev3.FractionalPercent_HUNDRED))}, "a fault for the whole Listener is not supported by meshlet"},
	} {
		l := clientListener(t, name)
		h := &hcmv3.HttpConnectionManager{}
		if err := l.ApiListener.ApiListener.UnmarshalTo(h); err != nil {
			t.Fatal(err)
		}
		h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(t, tt.fault)}}}, h.HttpFilters...)
		l.ApiListener.ApiListener = mustAny(t, h)
		_, err := resolver.Decode(l)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("empty fault filter refused: %v", err)
		case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("error %v does not say %q", err, tt.want)
		}
	}
}
