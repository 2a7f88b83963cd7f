package model

import "time"

// RateLimitPolicy is meshlet's RateLimitPolicy (policy.meshlet.io): a
// token bucket that the servers of the workloads it selects apply to the
// requests they receive. Istio has no such kind. One without a selector
// applies to its whole namespace, or to the whole mesh in the root
// namespace, as an AuthorizationPolicy does.
type RateLimitPolicy struct {
	Meta
	Spec *RateLimitSpec
}

// RateLimitSpec is the validated spec of a RateLimitPolicy.
type RateLimitSpec struct {
	// Selector is selector.matchLabels; empty selects every workload.
	Selector map[string]string
	// RequestsPerUnit tokens are added every Unit; at least 1.
	RequestsPerUnit uint32
	Unit            time.Duration // a second, a minute or an hour
	// Burst is the bucket's size: RequestsPerUnit when not written.
	Burst uint32
	// Match lists the requests limited: those that match any entry. Empty
	// limits every request.
	Match []RateLimitMatch
	// PerBucket, when set, gives each caller a bucket of its own.
	PerBucket *RateLimitPerBucket
}

// RateLimitMatch selects requests; every part that is set must match.
type RateLimitMatch struct {
	// PathExact or PathPrefix, at most one set. A gRPC method's path is
	// "/package.Service/Method".
	PathExact, PathPrefix string
	// Method is the request method, such as GET; gRPC calls are POST.
	Method string
	// Headers must all match; names are lower-case.
	Headers []RateLimitHeader
}

// RateLimitHeader matches one request header: exactly one of Exact,
// Prefix and Regex (RE2, matching the whole value) is set.
type RateLimitHeader struct {
	Name                 string
	Exact, Prefix, Regex string
}

// RateLimitPerBucket keys buckets by the caller's SPIFFE principal or by a
// request header's value, at most MaxBuckets of them.
type RateLimitPerBucket struct {
	Principal bool
	Header    string // lower-case; empty when Principal
	// MaxBuckets bounds the buckets a server keeps (see policy.Limiter
	// for what happens past it).
	MaxBuckets uint32
}
