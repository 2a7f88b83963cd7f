package policy

import (
	"time"

	"google.golang.org/grpc/codes"
)

// PerMillion is the denominator of the shares in Fault: a share of
// PerMillion means every request.
const PerMillion = 1_000_000

// Fault is a fault to inject into a route's requests, as Envoy's fault
// filter does (envoy.extensions.filters.http.fault.v3.HTTPFault): a delay
// for a share of the requests, then an abort for a share of them. Both
// are decided on the client, before the first attempt, so that a delayed
// or aborted request reaches no server before its delay ends, and an
// aborted one none at all.
//
// The zero Fault injects nothing. A Fault is read-only once built, and
// safe for concurrent use.
type Fault struct {
	// Delay is how long a delayed request waits before it is sent.
	Delay time.Duration
	// DelayPerMillion is the share of requests delayed, in millionths.
	DelayPerMillion uint32
	// Abort is how an aborted request ends.
	Abort Abort
	// AbortPerMillion is the share of requests aborted, in millionths.
	AbortPerMillion uint32
}

// Abort is the status an injected abort answers with: an HTTP status,
// or a gRPC status when IsGRPC.
type Abort struct {
	// HTTPStatus is the HTTP status, from 200 to 599, when not IsGRPC.
	HTTPStatus int
	// GRPCStatus is the gRPC status, when IsGRPC.
	GRPCStatus codes.Code
	IsGRPC     bool
}

// Decision is what a Fault does to one request.
type Decision struct {
	// Delay is how long to wait before going on; 0 for no delay.
	Delay time.Duration
	// Abort is set when the request is to end with the Fault's Abort
	// status, after the delay, instead of being sent.
	Abort bool
}

// Decide decides the fault for one request. n returns a uniform random
// number in [0, max), like math/rand/v2's Uint32N, which is what the
// data plane passes; tests pass their own. The delay and the abort are
// drawn apart, as Envoy and gRPC-Go draw them. It does not allocate.
func (f *Fault) Decide(n func(max uint32) uint32) Decision {
	var d Decision
	if f == nil {
		return d
	}
	if f.Delay > 0 && f.DelayPerMillion > 0 && (f.DelayPerMillion >= PerMillion || n(PerMillion) < f.DelayPerMillion) {
		d.Delay = f.Delay
	}
	if f.AbortPerMillion > 0 && (f.AbortPerMillion >= PerMillion || n(PerMillion) < f.AbortPerMillion) {
		d.Abort = true
	}
	return d
}

// GRPC is the gRPC status of the abort: GRPCStatus, or for an HTTP status
// the code gRPC gives it (gRPC's "HTTP to gRPC status code mapping", as
// gRPC-Go's fault filter applies it): 400 Internal, 401 Unauthenticated,
// 403 PermissionDenied, 404 Unimplemented, 429, 502, 503 and 504
// Unavailable, any other Unknown.
func (a Abort) GRPC() codes.Code {
	if a.IsGRPC {
		return a.GRPCStatus
	}
	switch a.HTTPStatus {
	case 400:
		return codes.Internal
	case 401:
		return codes.Unauthenticated
	case 403:
		return codes.PermissionDenied
	case 404:
		return codes.Unimplemented
	case 429, 502, 503, 504:
		return codes.Unavailable
	}
	return codes.Unknown
}
