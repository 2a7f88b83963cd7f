package balancer_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/meshlet/meshlet/balancer"
)

// reached lists the addresses that got picks, sorted.
func reached(got map[string]int) []string {
	var out []string
	for a, n := range got {
		if n > 0 {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}

// twoPriorities is endpoints 0 and 1 at priority 0, 2 and 3 at priority 1.
func twoPriorities(p0Unhealthy bool) []balancer.Endpoint {
	eps := endpoints(4)
	for i := range eps {
		if i >= 2 {
			eps[i].Priority = 1
		} else {
			eps[i].Unhealthy = p0Unhealthy
		}
	}
	return eps
}

func TestPriorityFailoverOnHealth(t *testing.T) {
	p0 := fmt.Sprint([]string{addr(0), addr(1)})
	p1 := fmt.Sprint([]string{addr(2), addr(3)})
	for _, policy := range policies {
		t.Run(policy.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: policy}, twoPriorities(false))
			for _, step := range []struct {
				p0Unhealthy bool
				want        string
			}{{false, p0}, {true, p1}, {false, p0}} {
				if err := b.Update(twoPriorities(step.p0Unhealthy)); err != nil {
					t.Fatal(err)
				}
				if got := fmt.Sprint(reached(pickN(t, b, 200, balancer.Request{}, balancer.DoneInfo{}))); got != step.want {
					t.Errorf("priority 0 unhealthy = %v: picks reached %s, want %s", step.p0Unhealthy, got, step.want)
				}
			}
		})
	}
}

func TestPriorityFailoverOnEjection(t *testing.T) {
	clk := newClock()
	b := newBalancer(t, balancer.Config{
		Outlier: &balancer.OutlierConfig{MaxEjectionPercent: 50},
		Now:     clk.Now,
	}, twoPriorities(false))
	drive(t, b, 10, map[string]balancer.FailureKind{addr(0): balancer.FailureGateway, addr(1): balancer.FailureGateway})
	if got := fmt.Sprint(reached(drive(t, b, 100, nil))); got != fmt.Sprint([]string{addr(2), addr(3)}) {
		t.Errorf("priority 0 ejected: picks reached %s, want priority 1", got)
	}
	clk.Advance(30 * time.Second)
	if got := fmt.Sprint(reached(drive(t, b, 100, nil))); got != fmt.Sprint([]string{addr(0), addr(1)}) {
		t.Errorf("priority 0 back: picks reached %s, want priority 0", got)
	}
}

func TestLocalityFailover(t *testing.T) {
	local := balancer.Locality{Region: "eu", Zone: "eu-1", SubZone: "rack-a"}
	eps := []balancer.Endpoint{
		{Address: "sub:1", Locality: local},
		{Address: "zone:1", Locality: balancer.Locality{Region: "eu", Zone: "eu-1", SubZone: "rack-b"}},
		{Address: "region:1", Locality: balancer.Locality{Region: "eu", Zone: "eu-2"}},
		{Address: "other:1", Locality: balancer.Locality{Region: "us", Zone: "us-1"}},
		{Address: "p1:1", Locality: local, Priority: 1},
	}
	for _, policy := range policies {
		t.Run(policy.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: policy, Locality: &balancer.LocalityConfig{Local: local}}, eps)
			// Take endpoints down nearest first: traffic goes to the next
			// nearest, then to priority 1; then bring them back.
			for down := 0; down <= len(eps)-1; down++ {
				cur := slices.Clone(eps)
				for i := range down {
					cur[i].Unhealthy = true
				}
				if err := b.Update(cur); err != nil {
					t.Fatal(err)
				}
				got := fmt.Sprint(reached(pickN(t, b, 50, balancer.Request{}, balancer.DoneInfo{})))
				if want := fmt.Sprint([]string{eps[down].Address}); got != want {
					t.Errorf("%d nearest down: picks reached %s, want %s", down, got, want)
				}
			}
			if err := b.Update(eps); err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprint(reached(pickN(t, b, 50, balancer.Request{}, balancer.DoneInfo{}))); got != "[sub:1]" {
				t.Errorf("all back: picks reached %s, want [sub:1]", got)
			}
		})
	}
}

func TestLocalityWithoutConfigIsOneLevel(t *testing.T) {
	eps := []balancer.Endpoint{
		{Address: "a:1", Locality: balancer.Locality{Zone: "z1"}},
		{Address: "b:1", Locality: balancer.Locality{Zone: "z2"}},
	}
	b := newBalancer(t, balancer.Config{}, eps)
	if got := pickN(t, b, 100, balancer.Request{}, balancer.DoneInfo{}); got["a:1"] != 50 || got["b:1"] != 50 {
		t.Errorf("picks %v, want 50 each", got)
	}
}

func TestLocalityWeights(t *testing.T) {
	const picks = 20000
	z1, z2 := balancer.Locality{Zone: "z1"}, balancer.Locality{Zone: "z2"}
	eps := []balancer.Endpoint{
		{Address: "a:1", Locality: z1, LocalityWeight: 1},
		{Address: "b:1", Locality: z2, LocalityWeight: 3},
		{Address: "c:1", Locality: z2, LocalityWeight: 3},
	}
	for _, policy := range policies {
		t.Run(policy.String(), func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: policy}, eps)
			got := pickN(t, b, picks, balancer.Request{}, balancer.DoneInfo{})
			share := float64(got["a:1"]) / picks
			// RingHash puts locality weight into endpoint weight: z1 has 1
			// of 7 points per unit; the others choose z1 with 1 in 4.
			want := 0.25
			if policy == balancer.RingHash {
				want = 1.0 / 7
			}
			t.Logf("%v: locality weights 1 (one endpoint) and 3 (two): z1 share %.3f, want %.3f ± 0.03", policy, share, want)
			if share < want-0.03 || share > want+0.03 {
				t.Errorf("z1 share %.3f, want %.3f ± 0.03", share, want)
			}
		})
	}
	// A locality with no available endpoint is skipped.
	eps[0].Unhealthy = true
	b := newBalancer(t, balancer.Config{}, eps)
	if got := pickN(t, b, 100, balancer.Request{}, balancer.DoneInfo{}); got["a:1"] != 0 {
		t.Errorf("unhealthy locality picked %d times", got["a:1"])
	}
}
