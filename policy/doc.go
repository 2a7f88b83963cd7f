// Package policy holds meshlet's resilience policies, each written once,
// transport-neutral: rate limiting (golang.org/x/time/rate), circuit
// breaking (limits on requests, retries and connections, and
// github.com/sony/gobreaker/v2 per destination), connection lifetimes
// (idle timeout, requests per connection), retry budgets and fault
// injection. The data plane
// (internal/dataplane) consults them for every request, on the client
// side for a destination's policies and on the server side for a
// workload's, and the HTTP and gRPC adapters only turn a refusal into
// their own status: 429 or RESOURCE_EXHAUSTED for a rate limit, 503 or
// UNAVAILABLE for an open breaker, the configured status for an injected
// abort.
//
// The policies come from the control plane as standard Envoy protos where
// one exists (local_ratelimit, circuit_breakers, retry_budget, fault),
// decoded by package resolver.
package policy
