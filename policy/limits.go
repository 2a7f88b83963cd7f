package policy

import (
	"errors"
	"fmt"
	"math"
	"sync/atomic"
)

// ErrCircuitOpen is wrapped by every refusal of a destination's circuit
// breaking: a concurrency limit that overflowed (*LimitError) or an open
// breaker (*OpenError). The adapters answer it with 503 or UNAVAILABLE.
var ErrCircuitOpen = errors.New("circuit breaker open")

// Unlimited is a limit that never bites, istiod's default threshold.
const Unlimited = math.MaxUint32

// Limits are a destination's concurrency limits: Envoy's circuit_breakers
// thresholds, set from Istio's connectionPool and retryBudget. A zero
// field means a limit of 0, which refuses every request (or retry): the
// resolver fills in Envoy's defaults for what the control plane left out.
type Limits struct {
	// MaxRequests bounds the attempts in flight to the destination
	// (max_requests; Istio's http2MaxRequests).
	MaxRequests uint32
	// MaxRetries bounds the retries in flight (max_retries; Istio's
	// maxRetries). A Budget replaces it, as in Envoy.
	MaxRetries uint32
	// Budget, when set, bounds the retries in flight by a share of the
	// attempts in flight instead of MaxRetries.
	Budget *RetryBudget
	// MaxConnections bounds the connections open to the destination's
	// endpoints together (max_connections; Istio's tcp.maxConnections).
	MaxConnections uint32
}

// LimitError is a request or retry that a limit refused.
type LimitError struct {
	// Limit is the Istio field of the limit: http2MaxRequests,
	// maxRetries, retryBudget or maxConnections.
	Limit string
	// Max is what the limit allowed when it refused.
	Max uint32
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("circuit breaker open: %s %d", e.Limit, e.Max)
}

// Is makes a LimitError match ErrCircuitOpen.
func (e *LimitError) Is(target error) bool { return target == ErrCircuitOpen }

// Gate counts one destination's attempts and retries in flight against
// its Limits. The counts outlive a change of limits, so that new limits
// apply to what is already in flight. Its methods are safe for concurrent
// use, never block, and do not allocate unless they refuse. The zero Gate
// has no limits until SetLimits.
type Gate struct {
	limits   atomic.Pointer[Limits]
	requests atomic.Int64
	retries  atomic.Int64
	conns    atomic.Int64
}

// SetLimits sets the limits, nil for none.
func (g *Gate) SetLimits(l *Limits) { g.limits.Store(l) }

// StartRequest takes a slot for one attempt, or refuses with a
// *LimitError if MaxRequests are in flight. EndRequest gives it back.
func (g *Gate) StartRequest() error {
	n := g.requests.Add(1)
	if l := g.limits.Load(); l != nil && n > int64(l.MaxRequests) {
		g.requests.Add(-1)
		return &LimitError{Limit: "http2MaxRequests", Max: l.MaxRequests}
	}
	return nil
}

// EndRequest gives back a slot StartRequest took.
func (g *Gate) EndRequest() { g.requests.Add(-1) }

// StartRetry takes a slot for one retry, or refuses with a *LimitError if
// the retry budget, or else MaxRetries, is used up. EndRetry gives it
// back, when the retry's attempt ends.
func (g *Gate) StartRetry() error {
	l := g.limits.Load()
	if l == nil {
		g.retries.Add(1)
		return nil
	}
	limit, name := int64(l.MaxRetries), "maxRetries"
	if b := l.Budget; b != nil {
		limit, name = b.Allowed(g.requests.Load()), "retryBudget"
	}
	if n := g.retries.Add(1); n > limit {
		g.retries.Add(-1)
		return &LimitError{Limit: name, Max: uint32(min(limit, math.MaxUint32))}
	}
	return nil
}

// EndRetry gives back a slot StartRetry took.
func (g *Gate) EndRetry() { g.retries.Add(-1) }

// InFlight returns the attempts and the retries in flight.
func (g *Gate) InFlight() (requests, retries int64) {
	return g.requests.Load(), g.retries.Load()
}
