package model

import (
	"encoding/json"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
)

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
	Selector map[string]string `json:"selector,omitempty"`
	// RequestsPerUnit tokens are added every Unit; at least 1.
	RequestsPerUnit uint32        `json:"requestsPerUnit"`
	Unit            time.Duration `json:"unitNanoseconds"` // a second, a minute or an hour
	// Burst is the bucket's size: RequestsPerUnit when not written.
	Burst uint32 `json:"burst"`
	// Match lists the requests limited: those that match any entry. Empty
	// limits every request.
	Match []RateLimitMatch `json:"match,omitempty"`
	// PerBucket, when set, gives each caller a bucket of its own.
	PerBucket *RateLimitPerBucket `json:"perBucket,omitempty"`
}

// Struct is the spec as a protobuf Struct, for what compares and shows
// resources as protos (the control plane's config diff and dump).
func (s *RateLimitSpec) Struct() *structpb.Struct {
	b, err := json.Marshal(s)
	var m map[string]any
	if err == nil {
		err = json.Unmarshal(b, &m)
	}
	out, err2 := structpb.NewStruct(m)
	if err != nil || err2 != nil {
		return &structpb.Struct{}
	}
	return out
}

// RateLimitMatch selects requests; every part that is set must match.
type RateLimitMatch struct {
	// PathExact or PathPrefix, at most one set. A gRPC method's path is
	// "/package.Service/Method".
	PathExact  string `json:"pathExact,omitempty"`
	PathPrefix string `json:"pathPrefix,omitempty"`
	// Method is the request method, such as GET; gRPC calls are POST.
	Method string `json:"method,omitempty"`
	// Headers must all match; names are lower-case.
	Headers []RateLimitHeader `json:"headers,omitempty"`
}

// RateLimitHeader matches one request header: exactly one of Exact,
// Prefix and Regex (RE2, matching the whole value) is set.
type RateLimitHeader struct {
	Name   string `json:"name"`
	Exact  string `json:"exact,omitempty"`
	Prefix string `json:"prefix,omitempty"`
	Regex  string `json:"regex,omitempty"`
}

// RateLimitPerBucket keys buckets by the caller's SPIFFE principal or by a
// request header's value, at most MaxBuckets of them.
type RateLimitPerBucket struct {
	Principal bool   `json:"principal,omitempty"`
	Header    string `json:"header,omitempty"` // lower-case; empty when Principal
	// MaxBuckets bounds the buckets a server keeps (see policy.Limiter
	// for what happens past it).
	MaxBuckets uint32 `json:"maxBuckets"`
}
