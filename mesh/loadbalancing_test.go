package mesh_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/meshtest"
)

// sequence makes n sequential calls and returns which instance answered
// each, with the x-user header set to user(i) when user is not nil.
func sequence(t *testing.T, c greeterpb.GreeterClient, n int, user func(int) string) []string {
	t.Helper()
	out := make([]string, 0, n)
	for i := range n {
		ctx := t.Context()
		if user != nil {
			ctx = metadata.AppendToOutgoingContext(ctx, "x-user", user(i))
		}
		r, err := c.SayHello(ctx, &greeterpb.HelloRequest{Name: "lb"})
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		out = append(out, r.GetInstance())
	}
	return out
}

// repeats is the share of calls answered by the same instance as the call
// before: about 0 for round robin over two instances, about 0.5 for random.
func repeats(seq []string) float64 {
	n := 0
	for i := 1; i < len(seq); i++ {
		if seq[i] == seq[i-1] {
			n++
		}
	}
	return float64(n) / float64(len(seq)-1)
}

func TestLoadBalancerFromDestinationRule(t *testing.T) {
	cases := []struct {
		name  string
		lb    string
		check func(t *testing.T, c greeterpb.GreeterClient)
	}{
		{"round robin", "      simple: ROUND_ROBIN", func(t *testing.T, c greeterpb.GreeterClient) {
			if r := repeats(sequence(t, c, 400, nil)); r > 0.05 {
				t.Errorf("round robin: %.0f%% of calls went to the same instance as the one before, want about 0", 100*r)
			}
		}},
		{"random", "      simple: RANDOM", func(t *testing.T, c greeterpb.GreeterClient) {
			// Over 2000 calls a fair coin repeats 50% with a sigma of 1.1
			// points; ±5 points is 4.5 sigma, so a fair balancer fails
			// about once in 150,000 runs (3 sigma over 400 calls failed
			// once in a CI run).
			if r := repeats(sequence(t, c, 2000, nil)); r < 0.45 || r > 0.55 {
				t.Errorf("random: %.1f%% repeats, want 50 ±5", 100*r)
			} else {
				t.Logf("random: %.1f%% repeats over 2000 calls", 100*r)
			}
		}},
		{"consistent hash on a header", "      consistentHash:\n        httpHeaderName: x-user", func(t *testing.T, c greeterpb.GreeterClient) {
			users := func(i int) string { return fmt.Sprintf("user-%d", i%40) }
			seq := sequence(t, c, 400, users)
			home := map[string]string{}
			used := map[string]bool{}
			for i, inst := range seq {
				u := users(i)
				if h, ok := home[u]; ok && h != inst {
					t.Fatalf("%s went to %s and then to %s", u, h, inst)
				}
				home[u] = inst
				used[inst] = true
			}
			if len(used) != 2 {
				t.Errorf("40 users all hashed to %v, want both instances used", used)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"greeter-rules.yaml": lbRule(tc.lb)})
			startGreeter(t, cp.XDSAddr(), "v1")
			startGreeter(t, cp.XDSAddr(), "v1")
			client := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
			seen := map[string]bool{}
			meshtest.WaitUntil(t, 15*time.Second, "both instances to answer", func() bool {
				r, err := call(t.Context(), client, "")
				if err == nil {
					seen[r.GetInstance()] = true
				}
				return len(seen) == 2
			})
			tc.check(t, client)
		})
	}
}
