package config

import (
	"fmt"
	"sort"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// faultFields are the fields of a route's fault that meshlet injects, on
// both transports and on gRPC-Go's xDS path (gRFC A33). The deprecated
// integer percent of a delay is read as Istio reads it.
var faultFields = under("http.fault",
	"delay.fixedDelay",
	"delay.percentage.value",
	"delay.percent",
	"abort.httpStatus",
	"abort.grpcStatus",
	"abort.percentage.value",
)

const (
	reasonExponentialDelay = outOfScope + "Istio does not implement it, and neither Envoy's fault filter nor gRPC-Go has it (use fixedDelay)"
	reasonHTTP2Error       = outOfScope + "Istio does not implement it, and a gRPC client and an HTTP/1.1 client could not inject it alike (use httpStatus or grpcStatus)"
)

// grpcStatusNames are the names Istio accepts in abort.grpcStatus, with
// their codes. OK is left out: an abort with OK would end a call without
// its response.
var grpcStatusNames = map[string]uint32{
	"CANCELLED": 1, "UNKNOWN": 2, "INVALID_ARGUMENT": 3, "DEADLINE_EXCEEDED": 4,
	"NOT_FOUND": 5, "ALREADY_EXISTS": 6, "PERMISSION_DENIED": 7, "RESOURCE_EXHAUSTED": 8,
	"FAILED_PRECONDITION": 9, "ABORTED": 10, "OUT_OF_RANGE": 11, "UNIMPLEMENTED": 12,
	"INTERNAL": 13, "UNAVAILABLE": 14, "DATA_LOSS": 15, "UNAUTHENTICATED": 16,
}

// upgradeAbortPercent reads the integer percent that Istio's API once had
// on a fault's abort, and that its own Bookinfo samples still set
// (virtual-service-ratings-test-abort.yaml), as percentage.value: the
// field is reserved in istio.io/api now, so strict decoding would refuse
// it, and dropping it would abort nothing.
func upgradeAbortPercent(spec map[string]any, report reportFunc) {
	routes, _ := spec["http"].([]any)
	for i, r := range routes {
		route, _ := r.(map[string]any)
		fault, _ := route["fault"].(map[string]any)
		abort, _ := fault["abort"].(map[string]any)
		percent, ok := abort["percent"]
		if !ok {
			continue
		}
		path := fmt.Sprintf("spec.http[%d].fault.abort", i)
		delete(abort, "percent")
		if _, both := abort["percentage"]; both {
			report.add(path+".percent", "percent and percentage cannot both be set (use percentage: percent is deprecated)")
			continue
		}
		abort["percentage"] = map[string]any{"value": percent}
	}
}

// validateFault checks a route's fault: each part must be able to fire,
// and say what it injects.
func validateFault(f *networking.HTTPFaultInjection, path string, report reportFunc) {
	if f.GetDelay() == nil && f.GetAbort() == nil {
		report.add(path, "sets neither delay nor abort, so it would do nothing (set one, or remove fault)")
		return
	}
	if d := f.GetDelay(); d != nil {
		dp := path + ".delay"
		if d.GetFixedDelay() == nil {
			if d.GetExponentialDelay() == nil {
				report.add(dp+".fixedDelay", "required: how long to delay requests")
			}
		} else if d.GetFixedDelay().AsDuration() <= 0 {
			report.add(dp+".fixedDelay", "must be greater than 0, got %v", d.GetFixedDelay().AsDuration())
		}
		//nolint:staticcheck // percent is deprecated, and still Istio's.
		switch percent := d.GetPercent(); {
		case d.GetPercentage() != nil && percent != 0:
			report.add(dp+".percent", "percent and percentage cannot both be set (use percentage: percent is deprecated)")
		case d.GetPercentage() != nil:
			validatePercentage(d.GetPercentage().GetValue(), dp+".percentage.value", report)
		case percent < 0 || percent > 100:
			report.add(dp+".percent", "must be between 0 and 100, got %d", percent)
		case percent == 0:
			report.add(dp+".percentage", "left out, so no request would be delayed (set percentage.value: 100 delays every request)")
		}
	}
	if a := f.GetAbort(); a != nil {
		ap := path + ".abort"
		switch e := a.GetErrorType().(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if e.HttpStatus < 200 || e.HttpStatus > 599 {
				report.add(ap+".httpStatus", "must be between 200 and 599, got %d", e.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if _, ok := grpcStatusNames[e.GrpcStatus]; !ok {
				names := make([]string, 0, len(grpcStatusNames))
				for n := range grpcStatusNames {
					names = append(names, n)
				}
				sort.Strings(names)
				report.add(ap+".grpcStatus", "unknown gRPC status %q (expected one of %s)", e.GrpcStatus, strings.Join(names, ", "))
			}
		case nil:
			report.add(ap, "sets neither httpStatus nor grpcStatus (set the status to answer with)")
		}
		if a.GetPercentage() == nil {
			report.add(ap+".percentage", "left out, so no request would be aborted (set percentage.value: 100 aborts every request)")
		} else {
			validatePercentage(a.GetPercentage().GetValue(), ap+".percentage.value", report)
		}
	}
}

func validatePercentage(v float64, path string, report reportFunc) {
	if !(v >= 0 && v <= 100) {
		report.add(path, "must be between 0 and 100, got %v", v)
	}
}
