package balancer_test

import (
	"container/heap"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/meshlet/meshlet/balancer"
)

// simulation is a discrete-event simulation in virtual time of a client
// with a fixed number of requests in flight (closed loop): each request is
// picked, takes its endpoint's latency (±10% jitter), reports Done, and is
// replaced at once by the next.
type simulation struct {
	endpoints   int
	slow        int           // index of the slow endpoint
	fast, slowD time.Duration // latencies
	concurrency int
	requests    int
}

type event struct {
	at  time.Time
	res balancer.Result
	lat time.Duration
}

type events []event

func (e events) Len() int           { return len(e) }
func (e events) Less(i, j int) bool { return e[i].at.Before(e[j].at) }
func (e events) Swap(i, j int)      { e[i], e[j] = e[j], e[i] }
func (e *events) Push(x any)        { *e = append(*e, x.(event)) }
func (e *events) Pop() any {
	old := *e
	x := old[len(old)-1]
	*e = old[:len(old)-1]
	return x
}

// run returns the slow endpoint's share of all picks, and its share of the
// last quarter of them.
func (s simulation) run(t *testing.T, policy balancer.PolicyKind) (share, lateShare float64, elapsed time.Duration) {
	t.Helper()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := start
	b := newBalancer(t, balancer.Config{Policy: policy, Now: func() time.Time { return now }}, endpoints(s.endpoints))
	rng := rand.New(rand.NewPCG(1, 2))
	slowAddr := addr(s.slow)
	var q events
	picks, slow, lateSlow := 0, 0, 0
	issue := func() {
		r, err := b.Pick(balancer.Request{Now: now})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		lat := s.fast
		if r.Endpoint.Address == slowAddr {
			lat = s.slowD
			slow++
			if picks >= s.requests*3/4 {
				lateSlow++
			}
		}
		picks++
		lat = time.Duration(float64(lat) * (0.9 + 0.2*rng.Float64()))
		heap.Push(&q, event{at: now.Add(lat), res: r, lat: lat})
	}
	for range s.concurrency {
		issue()
		now = now.Add(s.fast / time.Duration(s.concurrency))
	}
	for picks < s.requests {
		ev := heap.Pop(&q).(event)
		now = ev.at
		ev.res.Done(balancer.DoneInfo{Latency: ev.lat, At: now})
		issue()
	}
	return float64(slow) / float64(picks), float64(lateSlow) / float64(s.requests-s.requests*3/4), now.Sub(start)
}

func TestLatencyAwarePoliciesAvoidASlowEndpoint(t *testing.T) {
	tests := []struct {
		policy   balancer.PolicyKind
		maxShare float64 // the slow endpoint's share must stay below
		minShare float64 // and at or above (a control that the simulation bites)
	}{
		{balancer.PeakEWMA, 0.01, 0},
		{balancer.LeastRequest, 0.03, 0},
		{balancer.RoundRobin, 1, 0.099},
	}
	for _, inFlight := range []int{2, 20} {
		sim := simulation{endpoints: 10, slow: 3, fast: time.Millisecond, slowD: 50 * time.Millisecond, concurrency: inFlight, requests: 200000}
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%v/%d-in-flight", tt.policy, inFlight), func(t *testing.T) {
				share, late, elapsed := sim.run(t, tt.policy)
				t.Logf("%v: 10 endpoints, one at 50ms and nine at 1ms, %d in flight, %d requests over %v virtual: slow endpoint share %.4f overall, %.4f in the last quarter (even share 0.1000)",
					tt.policy, sim.concurrency, sim.requests, elapsed.Round(time.Millisecond), share, late)
				if share >= tt.maxShare || share < tt.minShare {
					t.Errorf("slow endpoint share %.4f, want in [%.3f, %.3f)", share, tt.minShare, tt.maxShare)
				}
			})
		}
	}
}

func TestPeakEWMAPeakAndDecay(t *testing.T) {
	clk := newClock()
	b := newBalancer(t, balancer.Config{Policy: balancer.PeakEWMA, Now: clk.Now}, endpoints(1))
	rtt := func() time.Duration { return b.Status()[0].RTT }
	if got := rtt(); got != balancer.DefaultEWMARTT {
		t.Errorf("new endpoint RTT %v, want DefaultRTT %v", got, balancer.DefaultEWMARTT)
	}
	done := func(lat time.Duration) {
		r, err := b.Pick(balancer.Request{})
		if err != nil {
			t.Fatal(err)
		}
		r.Done(balancer.DoneInfo{Latency: lat})
	}
	// A peak replaces the estimate at once.
	done(200 * time.Millisecond)
	if got := rtt(); got != 200*time.Millisecond {
		t.Errorf("after a 200ms peak, RTT %v, want 200ms", got)
	}
	// Idle for one decay time constant: the estimate falls by e.
	clk.Advance(10 * time.Second)
	if got, want := rtt(), time.Duration(float64(200*time.Millisecond)*0.36787944); absDiff(got, want) > time.Microsecond {
		t.Errorf("after 10s idle, RTT %v, want %v", got, want)
	}
	// A lower sample moves the average by 1-exp(-dt/decay).
	clk.Advance(0)
	b2 := newBalancer(t, balancer.Config{Policy: balancer.PeakEWMA, Now: clk.Now, PeakEWMA: balancer.PeakEWMAConfig{DefaultRTT: 100 * time.Millisecond, Decay: time.Second}}, endpoints(1))
	clk.Advance(time.Second)
	r, _ := b2.Pick(balancer.Request{})
	r.Done(balancer.DoneInfo{Latency: 10 * time.Millisecond})
	// E×w = 36.8ms > 10ms, so E = 100×0.368 + 10×0.632 = 43.1ms.
	if got, want := b2.Status()[0].RTT, 43*time.Millisecond+109*time.Microsecond; absDiff(got, want) > 50*time.Microsecond {
		t.Errorf("after a 10ms sample 1s later, RTT %v, want %v", got, want)
	}
}

func absDiff(a, b time.Duration) time.Duration {
	if a > b {
		return a - b
	}
	return b - a
}
