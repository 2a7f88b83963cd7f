package balancer_test

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/balancer"
)

func TestRoundRobinIsEven(t *testing.T) {
	for _, n := range []int{1, 3, 10} {
		b := newBalancer(t, balancer.Config{Policy: balancer.RoundRobin}, endpoints(n))
		got := pickN(t, b, 100*n, balancer.Request{}, balancer.DoneInfo{})
		want := map[string]int{}
		for i := range n {
			want[addr(i)] = 100
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("%d endpoints, %d picks: counts (-want +got):\n%s", n, 100*n, d)
		}
	}
}

func TestRoundRobinIgnoresWeights(t *testing.T) {
	eps := endpoints(2)
	eps[0].Weight = 9
	b := newBalancer(t, balancer.Config{Policy: balancer.RoundRobin}, eps)
	got := pickN(t, b, 200, balancer.Request{}, balancer.DoneInfo{})
	if got[addr(0)] != 100 || got[addr(1)] != 100 {
		t.Errorf("counts %v, want 100 each", got)
	}
}

func TestWeightedRoundRobinMatchesWeightsOverEachCycle(t *testing.T) {
	tests := []struct {
		name    string
		weights []uint32
	}{
		{"1,2,3,4", []uint32{1, 2, 3, 4}},
		{"equal", []uint32{5, 5, 5}},
		{"zero is one", []uint32{0, 1, 2}},
		{"gcd", []uint32{100, 300}},
		{"skewed", []uint32{1, 1, 1, 97}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints(len(tt.weights))
			var cycle uint32
			g := uint32(0)
			for i, w := range tt.weights {
				eps[i].Weight = w
				g = gcd(g, max(w, 1))
			}
			for _, w := range tt.weights {
				cycle += max(w, 1) / g
			}
			b := newBalancer(t, balancer.Config{Policy: balancer.WeightedRoundRobin}, eps)
			// Every window of one cycle, wherever it starts, holds each
			// endpoint exactly weight/gcd times.
			for start := range 3 {
				got := pickN(t, b, int(cycle), balancer.Request{}, balancer.DoneInfo{})
				for i, w := range tt.weights {
					if want := int(max(w, 1) / g); got[addr(i)] != want {
						t.Errorf("window %d: endpoint %d (weight %d) picked %d times in a cycle of %d, want %d", start, i, w, got[addr(i)], cycle, want)
					}
				}
			}
		})
	}
}

func gcd(a, b uint32) uint32 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func TestWeightedRoundRobinIsSmooth(t *testing.T) {
	// Weights 1 and 4: the light endpoint is never picked twice in a row
	// and the heavy one at most 4 times in a row.
	eps := endpoints(2)
	eps[1].Weight = 4
	b := newBalancer(t, balancer.Config{Policy: balancer.WeightedRoundRobin}, eps)
	run, last := 0, ""
	for range 50 {
		r, err := b.Pick(balancer.Request{})
		if err != nil {
			t.Fatal(err)
		}
		r.Done(balancer.DoneInfo{})
		if r.Endpoint.Address == last {
			run++
		} else {
			run, last = 1, r.Endpoint.Address
		}
		if (last == addr(0) && run > 1) || run > 4 {
			t.Fatalf("%s picked %d times in a row", last, run)
		}
	}
}

func TestRandomIsRoughlyEven(t *testing.T) {
	const n, picks = 10, 10000
	b := newBalancer(t, balancer.Config{Policy: balancer.Random}, endpoints(n))
	got := pickN(t, b, picks, balancer.Request{}, balancer.DoneInfo{})
	expected := float64(picks) / n
	chi2 := 0.0
	for i := range n {
		c := float64(got[addr(i)])
		chi2 += (c - expected) * (c - expected) / expected
		if share := c / picks; share < 0.085 || share > 0.115 {
			t.Errorf("endpoint %d share %.3f, want 0.100 ± 0.015", i, share)
		}
	}
	// 27.88 is the 0.999 quantile of chi-square with 9 degrees of freedom.
	t.Logf("random, %d picks over %d endpoints: chi-square %.2f (limit 27.88), counts %v", picks, n, chi2, got)
	if chi2 > 27.88 {
		t.Errorf("chi-square %.2f > 27.88: not uniform", chi2)
	}
}

func TestLeastRequestPrefersIdleEndpoints(t *testing.T) {
	// Held requests stay balanced: after 400 picks that never end, the
	// outstanding counts of 4 endpoints differ by little.
	b := newBalancer(t, balancer.Config{Policy: balancer.LeastRequest}, endpoints(4))
	for range 400 {
		if _, err := b.Pick(balancer.Request{}); err != nil {
			t.Fatal(err)
		}
	}
	lo, hi := int64(400), int64(0)
	for _, s := range b.Status() {
		lo, hi = min(lo, s.Outstanding), max(hi, s.Outstanding)
	}
	t.Logf("least request, 400 held picks on 4 endpoints: outstanding from %d to %d", lo, hi)
	if hi-lo > 3 {
		t.Errorf("outstanding from %d to %d, want a spread of at most 3", lo, hi)
	}

	// With 2 endpoints, one busy and one idle, the idle one gets every
	// request that ends at once.
	b = newBalancer(t, balancer.Config{Policy: balancer.LeastRequest}, endpoints(2))
	held, err := b.Pick(balancer.Request{})
	if err != nil {
		t.Fatal(err)
	}
	got := pickN(t, b, 1000, balancer.Request{}, balancer.DoneInfo{})
	if got[held.Endpoint.Address] != 0 {
		t.Errorf("busy endpoint picked %d times of 1000, want 0", got[held.Endpoint.Address])
	}
	held.Done(balancer.DoneInfo{})
}

func TestLeastRequestWeights(t *testing.T) {
	// With no load every comparison ties, and the first draw, made in
	// proportion to weight, decides: weights 1 and 3 share 25/75.
	const picks = 10000
	eps := endpoints(2)
	eps[1].Weight = 3
	for _, policy := range []balancer.PolicyKind{balancer.LeastRequest, balancer.PeakEWMA} {
		b := newBalancer(t, balancer.Config{Policy: policy}, eps)
		got := pickN(t, b, picks, balancer.Request{}, balancer.DoneInfo{})
		share := float64(got[addr(1)]) / picks
		t.Logf("%v, idle, weights 1 and 3: weight-3 share %.3f", policy, share)
		if share < 0.73 || share > 0.77 {
			t.Errorf("%v: weight-3 endpoint share %.3f, want 0.75 ± 0.02", policy, share)
		}
	}
}

func TestNoEndpoints(t *testing.T) {
	unhealthy := endpoints(3)
	for i := range unhealthy {
		unhealthy[i].Unhealthy = true
	}
	tests := []struct {
		name    string
		eps     []balancer.Endpoint
		wantMsg string
	}{
		{"never updated", nil, "the endpoint set is empty"},
		{"empty set", []balancer.Endpoint{}, "the endpoint set is empty"},
		{"all unhealthy", unhealthy, "3 of 3 endpoints unhealthy, 0 ejected"},
	}
	for _, policy := range policies {
		for _, tt := range tests {
			t.Run(policy.String()+"/"+tt.name, func(t *testing.T) {
				b, err := balancer.New(balancer.Config{Policy: policy})
				if err != nil {
					t.Fatal(err)
				}
				if tt.eps != nil {
					// Go from a working set to tt.eps.
					if err := b.Update(endpoints(2)); err != nil {
						t.Fatal(err)
					}
					if _, err := b.Pick(balancer.Request{}); err != nil {
						t.Fatalf("Pick with 2 endpoints: %v", err)
					}
					if err := b.Update(tt.eps); err != nil {
						t.Fatal(err)
					}
				}
				_, err = b.Pick(balancer.Request{Hash: 42, HasHash: true})
				if !errors.Is(err, balancer.ErrNoEndpoints) {
					t.Fatalf("Pick error = %v, want ErrNoEndpoints", err)
				}
				if !strings.Contains(err.Error(), tt.wantMsg) {
					t.Errorf("Pick error %q does not say %q", err, tt.wantMsg)
				}
			})
		}
	}
}

var policies = []balancer.PolicyKind{
	balancer.RoundRobin, balancer.WeightedRoundRobin, balancer.LeastRequest,
	balancer.Random, balancer.RingHash, balancer.PeakEWMA,
}

func TestUpdateErrorsKeepThePreviousSet(t *testing.T) {
	tests := []struct {
		name    string
		eps     []balancer.Endpoint
		wantMsg string
	}{
		{"no address", []balancer.Endpoint{{Address: "a:1"}, {}}, `endpoint 1 (locality ""): no address`},
		{"duplicate", []balancer.Endpoint{{Address: "a:1"}, {Address: "a:1"}}, `endpoint "a:1" appears twice`},
		{"mixed locality weights", []balancer.Endpoint{
			{Address: "a:1", Locality: balancer.Locality{Zone: "z1"}, LocalityWeight: 1},
			{Address: "b:1", Locality: balancer.Locality{Zone: "z2"}},
		}, `priority 0: endpoint "a:1" has a locality weight and endpoint "b:1" has none`},
		{"two weights for one locality", []balancer.Endpoint{
			{Address: "a:1", Locality: balancer.Locality{Zone: "z1"}, LocalityWeight: 1},
			{Address: "b:1", Locality: balancer.Locality{Zone: "z1"}, LocalityWeight: 2},
		}, `locality /z1 has weight 2, but 1 on another endpoint of priority 0`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBalancer(t, balancer.Config{}, endpoints(1))
			err := b.Update(tt.eps)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("Update error = %v, want one saying %q", err, tt.wantMsg)
			}
			got := pickN(t, b, 3, balancer.Request{}, balancer.DoneInfo{})
			if got[addr(0)] != 3 {
				t.Errorf("after a refused Update, picks %v, want the previous set", got)
			}
		})
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		name    string
		cfg     balancer.Config
		wantMsg string
	}{
		{"unknown policy", balancer.Config{Policy: 99}, "Config.Policy: unknown policy PolicyKind(99)"},
		{"ring too big", balancer.Config{RingHash: balancer.RingHashConfig{MaxRingSize: 1 << 30}}, "Config.RingHash.MaxRingSize"},
		{"min above max", balancer.Config{RingHash: balancer.RingHashConfig{MinRingSize: 4096, MaxRingSize: 1024}}, "MinRingSize: 4096 exceeds MaxRingSize 1024"},
		{"negative decay", balancer.Config{PeakEWMA: balancer.PeakEWMAConfig{Decay: -time.Second}}, "Config.PeakEWMA: negative duration"},
		{"percent", balancer.Config{Outlier: &balancer.OutlierConfig{MaxEjectionPercent: 101}}, "MaxEjectionPercent: 101 is not in 1..100"},
		{"negative interval", balancer.Config{Outlier: &balancer.OutlierConfig{Interval: -1}}, "Config.Outlier.Interval: negative duration"},
		{"max below base", balancer.Config{Outlier: &balancer.OutlierConfig{BaseEjectionTime: time.Minute, MaxEjectionTime: time.Second}}, "MaxEjectionTime: 1s is less than BaseEjectionTime 1m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := balancer.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("New error = %v, want one saying %q", err, tt.wantMsg)
			}
		})
	}
}

func TestUpdateKeepsStateOfEndpointsThatStay(t *testing.T) {
	b := newBalancer(t, balancer.Config{Policy: balancer.LeastRequest}, endpoints(2))
	// Hold one request on each endpoint.
	var held []balancer.Result
	for range 2 {
		r, err := b.Pick(balancer.Request{})
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, r)
	}
	// Endpoint 0 stays, endpoint 1 goes, endpoint 2 comes.
	if err := b.Update([]balancer.Endpoint{{Address: addr(0)}, {Address: addr(2)}}); err != nil {
		t.Fatal(err)
	}
	got := map[string]int64{}
	for _, s := range b.Status() {
		got[s.Endpoint.Address] = s.Outstanding
	}
	if d := cmp.Diff(map[string]int64{addr(0): 1, addr(2): 0}, got); d != "" {
		t.Errorf("outstanding after Update (-want +got):\n%s", d)
	}
	// The request on the removed endpoint ends harmlessly.
	for _, r := range held {
		r.Done(balancer.DoneInfo{})
	}
	for _, s := range b.Status() {
		if s.Outstanding != 0 {
			t.Errorf("%s: outstanding %d after every Done, want 0", s.Endpoint.Address, s.Outstanding)
		}
	}
}

func TestConcurrentPickDoneUpdate(t *testing.T) {
	for _, policy := range policies {
		t.Run(policy.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{
				Policy:  policy,
				Outlier: &balancer.OutlierConfig{MaxEjectionPercent: 50, BaseEjectionTime: time.Millisecond},
			}, endpoints(10))
			var wg sync.WaitGroup
			stop := make(chan struct{})
			for g := range 8 {
				wg.Go(func() {
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						r, err := b.Pick(balancer.Request{Hash: uint64(i), HasHash: true})
						if err != nil {
							continue
						}
						info := balancer.DoneInfo{Latency: time.Duration(g+1) * time.Millisecond}
						if r.Endpoint.Address == addr(g) {
							info.Failure = balancer.FailureGateway
						}
						r.Done(info)
					}
				})
			}
			for i := range 200 {
				if err := b.Update(endpoints(5 + i%6)); err != nil {
					t.Error(err)
				}
				_ = b.Status()
			}
			close(stop)
			wg.Wait()
			for _, s := range b.Status() {
				if s.Outstanding != 0 {
					t.Errorf("%s: outstanding %d after every Done, want 0", s.Endpoint.Address, s.Outstanding)
				}
			}
		})
	}
}

func TestPolicyKindString(t *testing.T) {
	got := make([]string, 0, len(policies)+1)
	for _, p := range append(policies, 7) {
		got = append(got, p.String())
	}
	want := []string{"RoundRobin", "WeightedRoundRobin", "LeastRequest", "Random", "RingHash", "PeakEWMA", "PolicyKind(7)"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("String (-want +got):\n%s", d)
	}
}
