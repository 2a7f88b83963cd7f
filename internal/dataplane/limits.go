package dataplane

import (
	"fmt"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/resolver"
)

// setPolicies takes a cluster's limits and breaker. The counts in flight
// stay; a breaker stays while its settings do, so that an unrelated
// change does not close an open one. Called with the core's lock.
func (cl *Cluster) setPolicies(rc resolver.Cluster) {
	cl.gate.SetLimits(rc.Limits)
	old := cl.breaker.Load()
	switch {
	case rc.Breaker == nil:
		cl.breaker.Store(nil)
	case old == nil || old.Settings() != *rc.Breaker:
		cl.breaker.Store(policy.NewBreaker(*rc.Breaker))
	}
}

// admission is what one attempt holds of its cluster's circuit breaking.
type admission struct {
	request bool // a slot of MaxRequests
	retry   bool // a slot of the retries (taken by CanRetry)
	ticket  policy.Ticket
	// refused is why the call was refused, which ends it: Envoy retries
	// no request that overflowed a limit or met an open breaker.
	refused error
}

// Admit lets the call's next attempt go to its cluster, or refuses it
// with an error wrapping policy.ErrCircuitOpen that names the cluster:
// too many attempts in flight, or the cluster's breaker open. After an
// attempt it admitted, the caller must call Release once, with how the
// attempt ended. A refused call is not retried.
func (call *Call) Admit() error {
	cl := call.Cluster
	if err := cl.gate.StartRequest(); err != nil {
		return call.refuse(err)
	}
	tk, err := cl.breaker.Load().Allow()
	if err != nil {
		cl.gate.EndRequest()
		return call.refuse(err)
	}
	call.limits.request, call.limits.ticket = true, tk
	return nil
}

func (call *Call) refuse(err error) error {
	call.dropRetry()
	call.limits.refused = &RefusedError{Cluster: call.Cluster.name, Err: err}
	return call.limits.refused
}

// Release gives back what Admit took, and tells the breaker how the
// attempt ended: a failure as outlier detection counts it (gateway
// errors, 5xx, local-origin failures); the caller's cancellation counts
// for nothing. It does nothing if the attempt was not admitted.
func (call *Call) Release(o Outcome) {
	if !call.limits.request {
		return
	}
	v := policy.Success
	switch o.Failure() {
	case balancer.FailureNone:
	case balancer.FailureCaller:
		v = policy.Ignored
	default:
		v = policy.Failure
	}
	call.limits.ticket.Report(v)
	call.limits.ticket, call.limits.request = policy.Ticket{}, false
	call.Cluster.gate.EndRequest()
	call.dropRetry()
}

// takeRetry takes a slot of the cluster's retries (maxRetries, or the
// retry budget) for the retry CanRetry is about to allow. The retry holds
// it until its attempt is released, so the limit bounds retries in
// flight: Envoy counts a retry only while it waits out its backoff.
func (call *Call) takeRetry() bool {
	if call.limits.refused != nil {
		return false
	}
	if call.Cluster.gate.StartRetry() != nil {
		return false // the last attempt's result stands
	}
	call.limits.retry = true
	return true
}

func (call *Call) dropRetry() {
	if call.limits.retry {
		call.limits.retry = false
		call.Cluster.gate.EndRetry()
	}
}

// Refused returns why the call was refused by its cluster's circuit
// breaking, or nil.
func (call *Call) Refused() error { return call.limits.refused }

// RefusedError is a call refused by its cluster's limits or breaker,
// before it reached the network. It wraps policy.ErrCircuitOpen.
type RefusedError struct {
	Cluster string
	Err     error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("%v of %s", e.Err, DescribeCluster(e.Cluster))
}

func (e *RefusedError) Unwrap() error { return e.Err }

// InFlight returns the cluster's attempts and retries in flight, for tests
// and the admin page.
func (cl *Cluster) InFlight() (requests, retries int64) { return cl.gate.InFlight() }
