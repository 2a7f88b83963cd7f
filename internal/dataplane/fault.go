package dataplane

import (
	"context"
	"math/rand/v2"
	"time"

	"github.com/meshlet/meshlet/policy"
)

// Fault injects the route's fault into the call, once, before its first
// attempt, as Envoy's fault filter does before the router: it waits the
// delay, if one is drawn, within ctx, then returns the abort to answer with, or nil to send the request. It
// returns ctx's error if ctx ends during the delay. The adapters call it
// before the route's timeout starts: in Envoy the router starts it, after
// the fault filter, and gRPC-Go applies it below its fault interceptor. Nothing is sent either
// way until it returns, and nothing at all on an abort.
func (call *Call) Fault(ctx context.Context) (*policy.Abort, error) {
	f := call.Route.Fault
	if f == nil {
		return nil, nil
	}
	d := f.Decide(rand.Uint32N)
	if d.Delay > 0 {
		call.delayed = true
		timer := time.NewTimer(d.Delay)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	if d.Abort {
		return &f.Abort, nil
	}
	return nil, nil
}

// AbortHTTPStatus is the HTTP status of an abort: its HTTP status, or the
// one Envoy gives its gRPC status.
func AbortHTTPStatus(a *policy.Abort) int {
	if a.IsGRPC {
		return GRPCToHTTP(a.GRPCStatus)
	}
	return a.HTTPStatus
}
