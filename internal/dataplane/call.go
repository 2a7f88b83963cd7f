package dataplane

import (
	"context"
	"math/rand/v2"
	"net/url"
	"strings"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/resolver"
)

// Request is what routing may know of a request, whatever its transport.
type Request struct {
	// Authority is matched against the virtual hosts' domains.
	Authority string
	// Path is the request's path with its query string; for gRPC,
	// "/package.Service/Method".
	Path string
	// Method is the HTTP method; POST for gRPC.
	Method string
	// Header returns a header's values by lower-case name (gRPC: the
	// outgoing metadata). It may be nil.
	Header func(string) []string
	// Cookie returns a cookie's value; nil when the transport has none.
	Cookie func(string) (string, bool)
}

// Match returns the route of routes for r, or an error wrapping
// resolver.ErrNoRoute.
func Match(routes *resolver.RouteConfig, r *Request) (*resolver.Route, error) {
	return resolver.MatchRoute(*routes, r.Authority, r.Path, r.Header, r.Method)
}

// Call is one request's plan: its route, the cluster its action chose,
// its hash, and the endpoints tried so far. It is not safe for
// concurrent use: one request's attempts run one after another.
type Call struct {
	Route   *resolver.Route
	Cluster *Cluster
	hash    uint64
	hasHash bool
	tried   []string
	buf     [2]string // tried's first entries, without an allocation
	attempt int
	limits  admission // the current attempt's slots (limits.go)
	delayed bool      // Fault held the call for a delay
}

// Delayed reports whether Fault delayed the call.
func (call *Call) Delayed() bool { return call.delayed }

// NewCall plans a request to h that matched route: it chooses the
// cluster by the route's weights and computes the request's hash. The
// cluster is found among the host's without a lock.
func (h *Host) NewCall(route *resolver.Route, r *Request) *Call {
	name := resolver.PickWeightedCluster(route.Action, rand.Uint32())
	var cl *Cluster
	for _, c := range h.state.Load().Clusters {
		if c.name == name {
			cl = c
			break
		}
	}
	if cl == nil {
		cl = h.core.Cluster(name) // routes newer or older than the host's state
	}
	call := &Call{Route: route, Cluster: cl}
	call.tried = call.buf[:0]
	if len(route.Action.HashPolicies) > 0 {
		call.hash, call.hasHash = requestHash(r, route.Action.HashPolicies)
	}
	return call
}

// Attempt returns how many attempts were made before the current one.
func (call *Call) Attempt() int { return call.attempt }

// Pick picks an endpoint the request has not tried yet, if one comes up
// within Istio's default previous_hosts tries (5), else the last one
// picked. The caller must call Result.Done once, and Tried when it sends
// to the endpoint.
func (call *Call) Pick() (balancer.Result, error) {
	br := balancer.Request{Hash: call.hash, HasHash: call.hasHash}
	for i := 1; ; i++ {
		res, err := call.Cluster.Pick(br)
		if err != nil || !call.triedAddr(res.Endpoint.Address) || i == envoydefaults.PreviousHostsTries {
			return res, err
		}
		res.Done(NotSent) // no verdict
	}
}

// NotSent is the DoneInfo of a pick that was not used.
var NotSent = balancer.DoneInfo{Failure: balancer.FailureCaller}

// Tried records that an attempt went to addr, so that retries pick
// other endpoints first.
func (call *Call) Tried(addr string) { call.tried = append(call.tried, addr) }

func (call *Call) triedAddr(a string) bool {
	for _, t := range call.tried {
		if t == a {
			return true
		}
	}
	return false
}

// AttemptContext bounds one attempt by the retry policy's per-try
// timeout, if it has one; without one it returns ctx and a nil cancel.
func (call *Call) AttemptContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if p := call.Route.Action.Retry; p != nil && p.PerTryTimeout > 0 {
		return context.WithTimeout(ctx, p.PerTryTimeout)
	}
	return ctx, nil
}

// CanRetry reports whether the request may be tried again after an
// attempt that came to o: the policy retries o, its retries are not used
// up, and ctx has not ended. Backoff then waits before the next attempt.
func (call *Call) CanRetry(ctx context.Context, o Outcome) bool {
	p := call.Route.Action.Retry
	return p != nil && call.attempt < int(p.NumRetries) && ctx.Err() == nil && Retriable(p, o) && call.takeRetry()
}

// RetriesExhausted reports whether an attempt that came to o would have
// been retried but that the policy's retries are used up: Envoy's URX.
func (call *Call) RetriesExhausted(o Outcome) bool {
	p := call.Route.Action.Retry
	return p != nil && p.NumRetries > 0 && call.attempt >= int(p.NumRetries) && Retriable(p, o)
}

// Backoff waits before the next attempt, Envoy's way, and counts it. It
// is false if ctx ended first.
func (call *Call) Backoff(ctx context.Context) bool {
	if !sleepBackoff(ctx, call.Route.Action.Retry, call.attempt) {
		call.dropRetry()
		return false
	}
	call.attempt++
	return true
}

// requestHash computes a request's hash for ring-hash clusters from the
// route's hash policies, as Envoy combines them.
func requestHash(r *Request, policies []resolver.HashPolicy) (uint64, bool) {
	var h uint64
	have := false
	var query url.Values
	for _, p := range policies {
		var v string
		switch p.Kind {
		case resolver.HashHeader:
			if r.Header == nil {
				continue
			}
			vals := r.Header(strings.ToLower(p.Name))
			if len(vals) == 0 {
				continue
			}
			v = strings.Join(vals, ",")
			if p.Regex != nil {
				v = p.Regex.ReplaceAllString(v, p.Substitution)
			}
		case resolver.HashCookie:
			if r.Cookie == nil {
				continue
			}
			c, ok := r.Cookie(p.Name)
			if !ok {
				continue
			}
			v = c
		case resolver.HashQueryParameter:
			if query == nil {
				_, q, _ := strings.Cut(r.Path, "?")
				query, _ = url.ParseQuery(q)
			}
			if !query.Has(p.Name) {
				continue
			}
			v = query.Get(p.Name)
		default:
			continue
		}
		// Combine as Envoy does: rotate and xor.
		h = (h<<1 | h>>63) ^ balancer.HashString(v)
		have = true
		if p.Terminal {
			break
		}
	}
	return h, have
}
