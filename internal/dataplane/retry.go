package dataplane

import (
	"context"
	"math/rand/v2"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/resolver"
)

// Outcome is how one attempt ended, in terms both transports share.
type Outcome struct {
	// Status is the HTTP status of the response; a gRPC response has
	// 200 whatever its gRPC status. 0 when no response came.
	Status int
	// GRPC is the gRPC status, when IsGRPC.
	GRPC   codes.Code
	IsGRPC bool
	// Err is why no response came: the endpoint could not be reached,
	// or reset the connection, or the attempt timed out.
	Err error
	// Caller is set when the caller ended the request: it says nothing
	// about the endpoint.
	Caller bool
}

// Failure classifies the outcome for outlier detection as Envoy does: a
// gRPC status counts as the HTTP status Envoy maps it to.
func (o Outcome) Failure() balancer.FailureKind {
	switch {
	case o.Caller:
		return balancer.FailureCaller
	case o.Err != nil:
		return balancer.FailureLocalOrigin
	}
	status := o.Status
	if o.IsGRPC {
		status = GRPCToHTTP(o.GRPC)
	}
	switch {
	case status == 502 || status == 503 || status == 504:
		return balancer.FailureGateway
	case status >= 500:
		return balancer.Failure5xx
	}
	return balancer.FailureNone
}

// Report tells the balancer how the attempt on res ended.
func Report(res balancer.Result, o Outcome, start time.Time) {
	now := time.Now()
	res.Done(balancer.DoneInfo{Err: o.Err, Failure: o.Failure(), Latency: now.Sub(start), At: now})
}

// GRPCToHTTP is the HTTP status Envoy gives a gRPC status
// (Grpc::Utility::grpcToHttpStatus).
func GRPCToHTTP(c codes.Code) int {
	switch c {
	case codes.OK:
		return 200
	case codes.Canceled:
		return 499
	case codes.InvalidArgument, codes.FailedPrecondition, codes.OutOfRange:
		return 400
	case codes.DeadlineExceeded:
		return 504
	case codes.NotFound:
		return 404
	case codes.AlreadyExists, codes.Aborted:
		return 409
	case codes.PermissionDenied:
		return 403
	case codes.ResourceExhausted:
		return 429
	case codes.Unimplemented:
		return 501
	case codes.Unavailable:
		return 503
	case codes.Unauthenticated:
		return 401
	}
	return 500 // Unknown, Internal, DataLoss
}

// grpcRetryOn are Envoy's gRPC retry conditions (x-envoy-retry-grpc-on).
var grpcRetryOn = map[string]codes.Code{
	"cancelled":          codes.Canceled,
	"deadline-exceeded":  codes.DeadlineExceeded,
	"internal":           codes.Internal,
	"resource-exhausted": codes.ResourceExhausted,
	"unavailable":        codes.Unavailable,
}

// Retriable reports whether the policy retries an attempt that came to
// o, with Envoy's meaning of each condition. gRPC conditions also match
// an attempt that got no response, by the status gRPC gives it, as
// gRPC-Go's own retries do.
func Retriable(p *resolver.RetryPolicy, o Outcome) bool {
	if p == nil || o.Caller {
		return false
	}
	for _, on := range p.RetryOn {
		switch on {
		case "5xx":
			if o.Err != nil || o.Status >= 500 {
				return true
			}
		case "gateway-error":
			if o.Status == 502 || o.Status == 503 || o.Status == 504 {
				return true
			}
		case "reset", "connect-failure", "refused-stream":
			if o.Err != nil {
				return true
			}
		case "retriable-4xx":
			if o.Status == 409 {
				return true
			}
		case "retriable-status-codes":
			if slices.Contains(p.RetriableStatusCodes, uint32(o.Status)) {
				return true
			}
		default:
			if code, ok := grpcRetryOn[on]; ok && o.IsGRPC && o.GRPC == code {
				return true
			}
		}
	}
	return false
}

// sleepBackoff waits before retry attempt+1, Envoy's way: a random time up
// to base*2^attempt, at most max.
func sleepBackoff(ctx context.Context, p *resolver.RetryPolicy, attempt int) bool {
	base, maxWait := envoydefaults.RetryBaseInterval, envoydefaults.RetryMaxInterval
	if p.BackoffBase > 0 {
		base = p.BackoffBase
	}
	if p.BackoffMax > 0 {
		maxWait = p.BackoffMax
	}
	d := min(base<<attempt, maxWait)
	timer := time.NewTimer(rand.N(d) + 1)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}
