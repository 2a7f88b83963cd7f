package mesh_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/mesh"
)

// WaitRoutable's errors say what is missing, and can be told apart with
// errors.Is.
func TestWaitRoutable(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"greeter.yaml": emptySubset})
	startGreeter(t, cp.XDSAddr(), "v1")
	waitRegistered(t, cp, 1)
	m := startMesh(t, cp.XDSAddr(), "client", nil)
	wait := func(target string) error {
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		return m.WaitRoutable(ctx, target)
	}
	for _, tc := range []struct {
		target string
		is     []error
		says   string
	}{
		{fmt.Sprintf("greeter:%d", greeterPort), []error{balancer.ErrNoEndpoints, context.DeadlineExceeded},
			fmt.Sprintf(`mesh: greeter:%[1]d is not routable: cluster outbound|%[1]d|v3|greeter.default.svc.cluster.local (subset "v3" of greeter.default.svc.cluster.local:%[1]d) has no endpoints`, greeterPort)},
		{"nowhere:80", []error{mesh.ErrUnknownHost, context.DeadlineExceeded},
			`mesh: host "nowhere.default.svc.cluster.local:80" (as "nowhere:80") is not in the mesh`},
		{"greeter", []error{mesh.ErrNoPort}, "greeter"},
	} {
		err := wait(tc.target)
		for _, want := range tc.is {
			if !errors.Is(err, want) {
				t.Errorf("WaitRoutable(%q) = %v, want it to wrap %v", tc.target, err, want)
			}
		}
		if err == nil || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("WaitRoutable(%q) = %v, want it to say %q", tc.target, err, tc.says)
		}
	}
}
