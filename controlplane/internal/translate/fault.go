package translate

import (
	"fmt"
	"strconv"

	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// faultFilter is the client Listener's fault filter, before the router,
// as istiod puts it: empty, so that it injects nothing but what a route
// sets in its typed_per_filter_config. gRPC-Go implements it (gRFC A33),
// so it is not optional.
func faultFilter() (*hcmv3.HttpFilter, error) {
	cfg, err := toAny(&faultv3.HTTPFault{})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: wellknown.Fault, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}, nil
}

// routeFault is a route's typed_per_filter_config for its Istio fault, as
// istiod translates it; nil when the route has none. Validation has
// checked the fault.
func routeFault(f *networking.HTTPFaultInjection, at string) (map[string]*anypb.Any, error) {
	if f == nil {
		return nil, nil
	}
	out := &faultv3.HTTPFault{}
	if d := f.GetDelay(); d != nil {
		out.Delay = &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.GetFixedDelay().AsDuration())},
		}
		if p := d.GetPercentage(); p != nil {
			out.Delay.Percentage = fractionalPercent(p.GetValue())
		} else {
			//nolint:staticcheck // the deprecated percent is still Istio's.
			out.Delay.Percentage = &typev3.FractionalPercent{Numerator: uint32(d.GetPercent()), Denominator: typev3.FractionalPercent_HUNDRED}
		}
	}
	if a := f.GetAbort(); a != nil {
		out.Abort = &faultv3.FaultAbort{Percentage: fractionalPercent(a.GetPercentage().GetValue())}
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			out.Abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(e.HttpStatus)}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			var c codes.Code
			if err := c.UnmarshalJSON([]byte(strconv.Quote(e.GrpcStatus))); err != nil {
				return nil, fmt.Errorf("translate: %s.fault.abort.grpcStatus: %w", at, err)
			}
			out.Abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(c)}
		default:
			return nil, fmt.Errorf("translate: %s.fault.abort: no httpStatus or grpcStatus", at)
		}
	}
	cfg, err := toAny(out)
	if err != nil {
		return nil, err
	}
	return map[string]*anypb.Any{wellknown.Fault: cfg}, nil
}

// fractionalPercent is Istio's percentage (a double, 0.1 = 0.1%) in
// millionths, as istiod sends it.
func fractionalPercent(percent float64) *typev3.FractionalPercent {
	return &typev3.FractionalPercent{Numerator: uint32(percent * 10000), Denominator: typev3.FractionalPercent_MILLION}
}
