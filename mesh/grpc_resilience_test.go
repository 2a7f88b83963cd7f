package mesh_test

import (
	"context"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/examples/greeterpb"
)

// flakyGRPC is flakyHTTP over gRPC: while failing is set it fails every
// SayHello with code (UNAVAILABLE when not set), and counts those.
type flakyGRPC struct {
	grpcGreeter
	code    codes.Code
	failing atomic.Bool
	failed  atomic.Int64
}

func (g *flakyGRPC) SayHello(ctx context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	if g.failing.Load() {
		g.failed.Add(1)
		code := g.code
		if code == codes.OK {
			code = codes.Unavailable
		}
		return nil, status.Error(code, "failing on purpose")
	}
	return g.grpcGreeter.SayHello(ctx, req)
}

// gRPC statuses count for outlier detection as the HTTP statuses Envoy
// maps them to: UNAVAILABLE is 503, a gateway error; INTERNAL is 500, a
// 5xx but not a gateway error. A rule that ejects on gateway errors alone
// ejects an instance that fails with the one and not the other.
func TestGRPCOutlierEjectionByStatus(t *testing.T) {
	gatewayOnly := greeterRule(trafficPolicy(`    outlierDetection:
      consecutive5xxErrors: 0
      consecutiveGatewayErrors: 3
      interval: 1s
      baseEjectionTime: 30s
      maxEjectionPercent: 100
`))
	for _, tc := range []struct {
		code  codes.Code
		eject bool
	}{
		{codes.Unavailable, true},
		{codes.Internal, false},
	} {
		t.Run(tc.code.String(), func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": gatewayOnly})
			bad := &flakyGRPC{code: tc.code}
			startGreeterWith(t, cp.XDSAddr(), "v1", bad)
			startGreeterWith(t, cp.XDSAddr(), "v1", &grpcGreeter{})
			waitRegistered(t, cp, 2)
			c := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
			waitServingInstances(t, grpcCaller(t, c), 2)

			bad.failing.Store(true)
			// Round robin over two: 20 calls send the bad instance about
			// 10, far more than the 3 in a row that eject it.
			for range 20 {
				call(t.Context(), c, "")
			}
			before := bad.failed.Load()
			for range 100 {
				call(t.Context(), c, "")
			}
			after := bad.failed.Load() - before
			t.Logf("%v: the failing instance got %d calls of the first 20, %d of the next 100", tc.code, before, after)
			switch {
			case before < 3:
				t.Fatalf("the failing instance got %d of 20 calls, want at least the 3 that eject it", before)
			case tc.eject && after > 0:
				t.Errorf("failing with %v (a gateway error): got %d of 100 calls after 3 in a row, want 0 (ejected)", tc.code, after)
			case !tc.eject && after < 30:
				t.Errorf("failing with %v (500, not a gateway error): got %d of 100 calls, want about half (not ejected)", tc.code, after)
			}
		})
	}
}
