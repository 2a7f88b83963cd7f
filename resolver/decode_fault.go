package resolver

import (
	"errors"
	"fmt"
	"maps"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/policy"
)

var faultFilterName = fullName(&faultv3.HTTPFault{})

// checkListenerFault accepts a Listener's fault filter only empty, as
// istiod sends it: routes set their faults, and a fault for every route
// of the Listener is not implemented.
func checkListenerFault(cfg *anypb.Any) error {
	f := &faultv3.HTTPFault{}
	if err := unpackFilter(cfg, f); err != nil {
		return err
	}
	if proto.Size(f) != 0 {
		return errors.New("a fault for the whole Listener is not supported by meshlet (set it per route, in typed_per_filter_config)")
	}
	return nil
}

// routeFault takes a route's fault out of its typed_per_filter_config: it
// returns the fault, or nil, and the other entries, for
// checkPerFilterConfig.
func routeFault(m map[string]*anypb.Any) (*policy.Fault, map[string]*anypb.Any, error) {
	for name, cfg := range m {
		if messageName(cfg.GetTypeUrl()) != faultFilterName {
			continue
		}
		f := &faultv3.HTTPFault{}
		if err := unpack(cfg, f); err != nil {
			return nil, nil, fmt.Errorf("typed_per_filter_config[%q]: %w", name, err)
		}
		if err := checkEnvoy(f); err != nil {
			return nil, nil, fmt.Errorf("typed_per_filter_config[%q]: %w", name, err)
		}
		out, err := convertFault(f)
		if err != nil {
			return nil, nil, fmt.Errorf("typed_per_filter_config[%q]: %w", name, err)
		}
		rest := maps.Clone(m)
		delete(rest, name)
		return out, rest, nil
	}
	return nil, m, nil
}

// convertFault converts Envoy's HTTPFault to the fault meshlet injects:
// a fixed delay and an abort with a fixed status, each for a share of
// requests. It refuses what meshlet would not honour: faults steered by
// request headers, limits on active faults, response rate limits, and
// faults for some clusters, callers or headers only.
func convertFault(f *faultv3.HTTPFault) (*policy.Fault, error) {
	rest := proto.Clone(f).(*faultv3.HTTPFault)
	out := &policy.Fault{}
	if d := f.GetDelay(); d != nil {
		fixed := d.GetFixedDelay()
		if fixed == nil {
			return nil, errors.New("delay: only fixed_delay is supported by meshlet (header_delay is not)")
		}
		out.Delay = fixed.AsDuration()
		n, err := perMillion(d.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("delay.percentage: %w", err)
		}
		out.DelayPerMillion = n
		rest.Delay.FaultDelaySecifier, rest.Delay.Percentage = nil, nil
		if err := onlyKnown(rest.Delay, "delay"); err != nil {
			return nil, err
		}
		rest.Delay = nil
	}
	if a := f.GetAbort(); a != nil {
		switch e := a.GetErrorType().(type) {
		case *faultv3.FaultAbort_HttpStatus:
			out.Abort.HTTPStatus = int(e.HttpStatus)
		case *faultv3.FaultAbort_GrpcStatus:
			if e.GrpcStatus == uint32(codes.OK) || e.GrpcStatus > uint32(codes.Unauthenticated) {
				return nil, fmt.Errorf("abort.grpc_status: %d is not a gRPC error status (1 to 16)", e.GrpcStatus)
			}
			out.Abort.GRPCStatus, out.Abort.IsGRPC = codes.Code(e.GrpcStatus), true
		default:
			return nil, errors.New("abort: only http_status and grpc_status are supported by meshlet (header_abort is not)")
		}
		n, err := perMillion(a.GetPercentage())
		if err != nil {
			return nil, fmt.Errorf("abort.percentage: %w", err)
		}
		out.AbortPerMillion = n
		rest.Abort.ErrorType, rest.Abort.Percentage = nil, nil
		if err := onlyKnown(rest.Abort, "abort"); err != nil {
			return nil, err
		}
		rest.Abort = nil
	}
	if err := onlyKnown(rest, ""); err != nil {
		return nil, err
	}
	return out, nil
}

// onlyKnown refuses any field still set in m, which convertFault did not
// read.
func onlyKnown(m proto.Message, at string) error {
	var err error
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		name := string(fd.Name())
		if at != "" {
			name = at + "." + name
		}
		err = fmt.Errorf("%s: not supported by meshlet, which injects a fixed delay and a fixed abort status, each for a share of requests", name)
		return false
	})
	return err
}
