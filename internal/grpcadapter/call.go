package grpcadapter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/telemetry"
)

// callKey carries a call's state from the interceptor to the picker.
type callKey struct{}

// callState is one RPC as the picker and the interceptor share it.
type callState struct {
	call *dataplane.Call
	host *dataplane.Host
	req  dataplane.Request
	ctx  context.Context // the call's, with the route's timeout: its end is the caller's
	tel  *telemetry.Request

	mu     sync.Mutex
	last   dataplane.Outcome // of the attempt that reached an endpoint
	have   bool
	replan bool // the picker found the call's cluster no longer routed
	// answered: the last attempt that reached an endpoint got a response
	// (for telemetry: a failure without one is a connect failure).
	answered bool
	// noEndpoints: the last pick found no endpoint to send to (for
	// telemetry: no healthy upstream, UH). An atomic, as the picker reads
	// it on every pick.
	noEndpoints atomic.Bool
}

// setNoEndpoints records whether the last pick found no endpoint; a pick
// that found one writes nothing unless the one before did not.
func (cs *callState) setNoEndpoints(none bool) {
	if none || cs.noEndpoints.Load() {
		cs.noEndpoints.Store(none)
	}
}

// errReplan fails an attempt whose cluster the routes no longer send to;
// the interceptor plans the call again, and it is not a retry.
var errReplan = status.Error(codes.Unavailable, "mesh: the routes changed during the call")

// maxReplans bounds how often one call follows changing routes.
const maxReplans = 3

func (cs *callState) setReplan() {
	cs.mu.Lock()
	cs.replan = true
	cs.mu.Unlock()
}

// takeReplan plans the call again if the picker asked for it, from the
// host's routes as they are now. It reports whether it did.
func (cs *callState) takeReplan() bool {
	cs.mu.Lock()
	replan := cs.replan
	cs.replan = false
	cs.mu.Unlock()
	if !replan {
		return false
	}
	routes := cs.host.State().Routes
	if routes == nil {
		return false
	}
	route, err := dataplane.Match(routes, &cs.req)
	if err != nil {
		return false
	}
	cs.call = cs.host.NewCall(route, &cs.req)
	return true
}

// outcome records how an attempt that reached an endpoint ended. An RPC
// that failed before any byte came back (the connection failed or was
// reset) is a local-origin failure, as in Envoy.
func (cs *callState) outcome(di balancer.DoneInfo) dataplane.Outcome {
	o := dataplane.Outcome{IsGRPC: true, Status: 200}
	if di.Err != nil {
		o.GRPC = status.Code(di.Err)
		if !di.BytesReceived {
			o.Status, o.Err = 0, di.Err
		}
		o.Caller = cs.ctx.Err() != nil
	}
	cs.mu.Lock()
	cs.last, cs.have, cs.answered = o, true, o.Err == nil
	cs.mu.Unlock()
	return o
}

// peek returns how an attempt that ended with err came out, keeping it
// for take.
func (cs *callState) peek(err error) dataplane.Outcome { return cs.attemptOutcome(err, false) }

// take returns how the attempt that ended with err came out, and forgets
// it for the next attempt.
func (cs *callState) take(err error) dataplane.Outcome { return cs.attemptOutcome(err, true) }

func (cs *callState) attemptOutcome(err error, forget bool) dataplane.Outcome {
	cs.mu.Lock()
	o, have := cs.last, cs.have
	if forget {
		cs.have = false
	}
	cs.mu.Unlock()
	if have {
		return o
	}
	if err == nil {
		return dataplane.Outcome{IsGRPC: true, Status: 200}
	}
	// No endpoint was reached: the picker failed the attempt.
	return dataplane.Outcome{Err: err, IsGRPC: true, GRPC: status.Code(err), Caller: cs.ctx.Err() != nil}
}

// target is a ClientConn's host, found once.
type target struct {
	name string // the client Listener's
	host atomic.Pointer[dataplane.Host]
}

func (a *Adapter) target(cc *grpc.ClientConn) (*target, error) {
	raw := cc.Target()
	if t, ok := a.hosts.Load(raw); ok {
		return t.(*target), nil
	}
	name, ok, err := a.endpointName(raw)
	if !ok || err != nil {
		return nil, err
	}
	t, _ := a.hosts.LoadOrStore(raw, &target{name: name})
	return t.(*target), nil
}

// plan waits as the mesh's ConfigWait says for what the call needs, then
// matches its route and plans it. It returns a nil state for a target of
// another scheme, which meshlet leaves alone.
func (a *Adapter) plan(ctx context.Context, cc *grpc.ClientConn, method string, opts []grpc.CallOption) (*callState, context.CancelFunc, error) {
	t, err := a.target(cc)
	if t == nil || err != nil {
		return nil, nil, err
	}
	tr := a.cfg.Telemetry.StartClient(ctx, telemetry.GRPC, "POST", method, t.name)
	if tr != nil {
		ctx = tr.OutgoingContext(tr.Context())
	}
	cs, cancel, err := a.planCall(ctx, cc, t, method, opts, tr)
	if err != nil {
		endRefused(tr, err)
		return nil, nil, err
	}
	cs.tel = tr
	return cs, cancel, nil
}

// planCall is plan's work once the target is known.
func (a *Adapter) planCall(ctx context.Context, cc *grpc.ClientConn, t *target, method string, opts []grpc.CallOption, tr *telemetry.Request) (*callState, context.CancelFunc, error) {
	h := t.host.Load()
	var routes *resolver.RouteConfig
	if h != nil {
		routes = h.State().Routes
	}
	waitCtx := ctx
	var cancelWait context.CancelFunc = func() {}
	if routes == nil {
		waitForReady := false
		for _, o := range opts {
			if ff, ok := o.(grpc.FailFastCallOption); ok {
				waitForReady = !ff.FailFast
			}
		}
		if !waitForReady {
			waitCtx, cancelWait = context.WithTimeout(ctx, a.cfg.WaitTimeout)
		}
		defer cancelWait()
		core, err := a.cfg.Core(waitCtx)
		if err != nil {
			return nil, nil, status.Error(codes.Unavailable, err.Error())
		}
		h = core.Host(t.name)
		t.host.Store(h)
		if routes, err = h.Routes(waitCtx, cc.Target(), waitForReady); err != nil {
			tr.Flag(telemetry.FlagNoRoute, err.Error())
			return nil, nil, err
		}
	}
	md, _ := metadata.FromOutgoingContext(ctx)
	cs := &callState{host: h, req: dataplane.Request{Authority: t.name, Path: method, Method: "POST", Header: md.Get}}
	route, err := dataplane.Match(routes, &cs.req)
	if err != nil {
		e := &callError{code: codes.Unavailable, msg: fmt.Sprintf("mesh: %s: no route for %s in the control plane's config", t.name, method), err: err}
		tr.Flag(telemetry.FlagNoRoute, e.msg)
		return nil, nil, e
	}
	call := h.NewCall(route, &cs.req)
	tr.Route(route.Name, call.Cluster.Name())
	err = fault(ctx, call)
	if tr != nil {
		faultFlags(tr, call, err)
	}
	if err != nil {
		return nil, nil, err
	}
	cancel := context.CancelFunc(func() {})
	if d := route.Action.Timeout; d > 0 {
		ctx, cancel = context.WithTimeout(ctx, d)
	}
	if err := call.Cluster.Wait(ctx); err != nil {
		cancel()
		err = clusterError(t.name, method, err)
		if tr != nil {
			waitFlags(tr, ctx, err)
		}
		return nil, nil, err
	}
	cs.call, cs.ctx = call, ctx
	return cs, cancel, nil
}

// clusterError is a call's error for a cluster that cannot take it.
func clusterError(host, method string, err error) error {
	if _, ok := status.FromError(err); ok && !errors.As(err, new(*dataplane.GapError)) {
		return err
	}
	return &callError{code: codes.Unavailable, msg: fmt.Sprintf("mesh: %s %s: %v", host, method, err), err: err}
}

// callError is a call meshlet refused, with its gRPC status and the
// cause to test for.
type callError struct {
	code codes.Code
	msg  string
	err  error
}

func (e *callError) Error() string              { return e.msg }
func (e *callError) Unwrap() error              { return e.err }
func (e *callError) GRPCStatus() *status.Status { return status.New(e.code, e.msg) }

func (a *Adapter) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	cs, cancel, err := a.plan(ctx, cc, method, opts)
	if err != nil {
		return err
	}
	if cs == nil {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	defer cancel()
	ctx = context.WithValue(cs.ctx, callKey{}, cs)
	if cs.tel == nil {
		return cs.unary(ctx, method, req, reply, cc, invoker, opts)
	}
	cs.tel.AddBytes(messageSize(req), 0)
	err = cs.unary(ctx, method, req, reply, cc, invoker, opts)
	if err == nil {
		cs.tel.AddBytes(0, messageSize(reply))
	}
	cs.end(err)
	return err
}

// unary makes the attempts of a unary call.
func (cs *callState) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts []grpc.CallOption) error {
	for replans := 0; ; {
		if err := cs.call.Admit(); err != nil {
			cs.tel.Flag(telemetry.FlagUpstreamOverflow, err.Error())
			return refusal(err)
		}
		actx, acancel := cs.call.AttemptContext(ctx)
		err := invoker(actx, method, req, reply, cc, opts...)
		if acancel != nil {
			acancel()
		}
		o := cs.take(err)
		cs.call.Release(o)
		if err == nil {
			return nil
		}
		if replans < maxReplans && cs.takeReplan() {
			replans++
			continue
		}
		if !cs.call.CanRetry(cs.ctx, o) {
			if cs.call.RetriesExhausted(o) {
				cs.tel.Flag(telemetry.FlagRetryLimit, "")
			}
			return err
		}
		if !cs.call.Backoff(cs.ctx) {
			return err
		}
	}
}

// refusal is the error of a call its cluster's circuit breaking refused:
// UNAVAILABLE, as Envoy's overflow is 503.
func refusal(err error) error {
	return &callError{code: codes.Unavailable, msg: "mesh: " + err.Error(), err: err}
}
