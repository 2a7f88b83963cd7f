package mesh

import (
	"net/http"
	"strconv"

	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/internal/dataplane"
)

// rateLimitCode is the gRPC status of a call a rate limit refused: what
// the filter asks for, as Envoy answers.
func rateLimitCode(e *dataplane.InboundRateLimitError) codes.Code {
	if e.ResourceExhausted {
		return codes.ResourceExhausted
	}
	return codes.Unavailable
}

// writeRateLimited answers an HTTP request a rate limit refused: 429, with
// Retry-After in whole seconds, rounded up, when the filter asks for it.
func writeRateLimited(w http.ResponseWriter, e *dataplane.InboundRateLimitError) {
	if e.RetryAfter {
		w.Header().Set("Retry-After", strconv.FormatInt(e.RetryAfterSeconds(), 10))
	}
	http.Error(w, "local_rate_limited: "+e.Error(), http.StatusTooManyRequests)
}
