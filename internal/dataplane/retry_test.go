package dataplane

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/resolver"
)

var errReset = errors.New("connection reset")

func TestOutcomeFailure(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Outcome
		want balancer.FailureKind
	}{
		{"HTTP 200", Outcome{Status: 200}, balancer.FailureNone},
		{"HTTP 404", Outcome{Status: 404}, balancer.FailureNone},
		{"HTTP 500", Outcome{Status: 500}, balancer.Failure5xx},
		{"HTTP 503", Outcome{Status: 503}, balancer.FailureGateway},
		{"no response", Outcome{Err: errReset}, balancer.FailureLocalOrigin},
		{"cancelled by the caller", Outcome{Err: errReset, Caller: true}, balancer.FailureCaller},
		// A gRPC status counts as the HTTP status Envoy maps it to.
		{"gRPC OK", Outcome{Status: 200, IsGRPC: true}, balancer.FailureNone},
		{"gRPC UNAVAILABLE", Outcome{Status: 200, IsGRPC: true, GRPC: codes.Unavailable}, balancer.FailureGateway},
		{"gRPC DEADLINE_EXCEEDED", Outcome{Status: 200, IsGRPC: true, GRPC: codes.DeadlineExceeded}, balancer.FailureGateway},
		{"gRPC INTERNAL", Outcome{Status: 200, IsGRPC: true, GRPC: codes.Internal}, balancer.Failure5xx},
		{"gRPC UNIMPLEMENTED", Outcome{Status: 200, IsGRPC: true, GRPC: codes.Unimplemented}, balancer.Failure5xx},
		{"gRPC NOT_FOUND", Outcome{Status: 200, IsGRPC: true, GRPC: codes.NotFound}, balancer.FailureNone},
		{"gRPC without a response", Outcome{IsGRPC: true, GRPC: codes.Unavailable, Err: errReset}, balancer.FailureLocalOrigin},
	} {
		if got := tc.o.Failure(); got != tc.want {
			t.Errorf("%s: Failure() = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestRetriable(t *testing.T) {
	policy := func(on ...string) *resolver.RetryPolicy {
		return &resolver.RetryPolicy{NumRetries: 1, RetryOn: on, RetriableStatusCodes: []uint32{503}}
	}
	grpcStatus := func(c codes.Code) Outcome { return Outcome{Status: 200, IsGRPC: true, GRPC: c} }
	for _, tc := range []struct {
		name string
		on   []string
		o    Outcome
		want bool
	}{
		{"5xx on a 500", []string{"5xx"}, Outcome{Status: 500}, true},
		{"5xx on a 404", []string{"5xx"}, Outcome{Status: 404}, false},
		{"5xx without a response", []string{"5xx"}, Outcome{Err: errReset}, true},
		{"gateway-error on a 502", []string{"gateway-error"}, Outcome{Status: 502}, true},
		{"gateway-error on a 500", []string{"gateway-error"}, Outcome{Status: 500}, false},
		{"connect-failure without a response", []string{"connect-failure"}, Outcome{Err: errReset}, true},
		{"connect-failure on a 503", []string{"connect-failure"}, Outcome{Status: 503}, false},
		{"retriable-4xx on a 409", []string{"retriable-4xx"}, Outcome{Status: 409}, true},
		{"retriable-status-codes on a 503", []string{"retriable-status-codes"}, Outcome{Status: 503}, true},
		{"retriable-status-codes on a 502", []string{"retriable-status-codes"}, Outcome{Status: 502}, false},
		{"unavailable on gRPC UNAVAILABLE", []string{"unavailable"}, grpcStatus(codes.Unavailable), true},
		{"unavailable on gRPC INTERNAL", []string{"unavailable"}, grpcStatus(codes.Internal), false},
		{"unavailable on an HTTP 503", []string{"unavailable"}, Outcome{Status: 503}, false},
		{"unavailable on a gRPC call without a response", []string{"unavailable"}, Outcome{IsGRPC: true, GRPC: codes.Unavailable, Err: errReset}, true},
		{"cancelled on gRPC CANCELLED from the server", []string{"cancelled"}, grpcStatus(codes.Canceled), true},
		{"nothing when the caller ended it", []string{"cancelled", "5xx"}, Outcome{IsGRPC: true, GRPC: codes.Canceled, Err: errReset, Caller: true}, false},
		// A gRPC response is an HTTP 200, whatever its status, as behind Envoy.
		{"5xx on gRPC UNAVAILABLE", []string{"5xx"}, grpcStatus(codes.Unavailable), false},
		{"no conditions", nil, Outcome{Status: 503}, false},
	} {
		if got := Retriable(policy(tc.on...), tc.o); got != tc.want {
			t.Errorf("%s: Retriable = %v, want %v", tc.name, got, tc.want)
		}
	}
	if Retriable(nil, Outcome{Status: 503}) {
		t.Error("Retriable with no policy = true, want false")
	}
}

func TestRequestHash(t *testing.T) {
	headers := map[string][]string{"x-user": {"alice"}}
	r := &Request{Path: "/p?id=7", Header: func(n string) []string { return headers[n] }}
	byHeader, ok := requestHash(r, []resolver.HashPolicy{{Kind: resolver.HashHeader, Name: "X-User"}})
	if !ok || byHeader != balancer.HashString("alice") {
		t.Errorf("header hash = %d, %v; want the hash of alice", byHeader, ok)
	}
	byQuery, ok := requestHash(r, []resolver.HashPolicy{{Kind: resolver.HashQueryParameter, Name: "id"}})
	if !ok || byQuery != balancer.HashString("7") {
		t.Errorf("query hash = %d, %v; want the hash of 7", byQuery, ok)
	}
	// A transport without cookies (gRPC) hashes nothing for a cookie.
	if _, ok := requestHash(r, []resolver.HashPolicy{{Kind: resolver.HashCookie, Name: "session"}}); ok {
		t.Error("cookie hash without cookies: ok, want none")
	}
	// Policies combine, and a terminal one that hashes ends the list.
	both, _ := requestHash(r, []resolver.HashPolicy{{Kind: resolver.HashHeader, Name: "x-user", Terminal: true}, {Kind: resolver.HashQueryParameter, Name: "id"}})
	if both != byHeader {
		t.Errorf("terminal header policy: hash %d, want the header's alone %d", both, byHeader)
	}
}
