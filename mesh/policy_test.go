package mesh_test

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/meshtest"
)

func TestRetriesFromVirtualService(t *testing.T) {
	cases := []struct {
		name     string
		retries  string
		failures int
		wantCode codes.Code
	}{
		{"three retries outlast two failures", "    retries:\n      attempts: 3\n      retryOn: unavailable\n", 2, codes.OK},
		{"two retries do not outlast three failures", "    retries:\n      attempts: 2\n      retryOn: unavailable\n", 3, codes.Unavailable},
		{"attempts 0 turns retries off", "    retries:\n      attempts: 0\n", 1, codes.Unavailable},
		{"Istio's default retries once more on unavailable", "", 1, codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter-route.yaml": greeterRoute(toGreeter("", tc.retries))})
			startGreeterWith(t, cp.XDSAddr(), "v1", &grpcGreeter{failures: tc.failures})
			client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
			meshtest.WaitUntil(t, 15*time.Second, "the route to be served", func() bool {
				_, err := client.SayHello(t.Context(), steer(0, ""))
				return err == nil
			})
			_, err := client.SayHello(t.Context(), steer(0, "once"))
			if got := status.Code(err); got != tc.wantCode {
				t.Errorf("after %d failures: got %v (%v), want %v", tc.failures, got, err, tc.wantCode)
			}
		})
	}
}

func TestTimeoutFromVirtualService(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter-route.yaml": greeterRoute(toGreeter("", "    timeout: 200ms\n"))})
	startGreeterWith(t, cp.XDSAddr(), "v1", &grpcGreeter{})
	client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
	meshtest.WaitUntil(t, 15*time.Second, "the route to be served", func() bool {
		_, err := client.SayHello(t.Context(), steer(0, ""))
		return err == nil
	})
	if _, err := client.SayHello(t.Context(), steer(50*time.Millisecond, "")); err != nil {
		t.Errorf("a 50ms call under a 200ms timeout failed: %v", err)
	}
	start := time.Now()
	_, err := client.SayHello(t.Context(), steer(2*time.Second, ""))
	took := time.Since(start)
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a 2s call under a 200ms timeout: got %v, want DeadlineExceeded", err)
	}
	if took < 150*time.Millisecond || took > 1500*time.Millisecond {
		t.Errorf("the call failed after %v, want about 200ms", took)
	}
}
