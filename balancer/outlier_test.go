package balancer_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshlet/meshlet/balancer"
)

// drive makes n requests; the endpoints in bad fail with the given kind,
// the others succeed. It counts the picks per address.
func drive(t *testing.T, b *balancer.Balancer, n int, bad map[string]balancer.FailureKind) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		r, err := b.Pick(balancer.Request{})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[r.Endpoint.Address]++
		r.Done(balancer.DoneInfo{Failure: bad[r.Endpoint.Address]})
	}
	return got
}

func ejected(b *balancer.Balancer) []string {
	var out []string
	for _, s := range b.Status() {
		if s.Ejected {
			out = append(out, s.Endpoint.Address)
		}
	}
	return out
}

func TestOutlierEjectsAndBringsBack(t *testing.T) {
	clk := newClock()
	b := newBalancer(t, balancer.Config{Outlier: &balancer.OutlierConfig{}, Now: clk.Now}, endpoints(10))
	bad := map[string]balancer.FailureKind{addr(4): balancer.FailureGateway}

	// Round robin: 50 picks give endpoint 4 its 5 consecutive failures.
	drive(t, b, 50, bad)
	if got := fmt.Sprint(ejected(b)); got != "["+addr(4)+"]" {
		t.Fatalf("after 5 consecutive 503s, ejected %s, want [%s]", got, addr(4))
	}
	for _, step := range []struct {
		advance time.Duration
		wantIn  bool
	}{
		{0, false},
		{29*time.Second + 999*time.Millisecond, false},
		{time.Millisecond, true}, // 30s: BaseEjectionTime
	} {
		clk.Advance(step.advance)
		got := drive(t, b, 100, nil)
		if in := got[addr(4)] > 0; in != step.wantIn {
			t.Errorf("at +%v of the first ejection: endpoint 4 picked %d times of 100, want picked = %v", clk.Now().Sub(newClock().Now()), got[addr(4)], step.wantIn)
		}
	}

	// Fails again at once: the second ejection lasts 2 × 30s.
	drive(t, b, 50, bad)
	if len(ejected(b)) != 1 {
		t.Fatalf("not ejected a second time")
	}
	if s := b.Status()[4]; s.Ejections != 2 || s.EjectedUntil.Sub(clk.Now()) != time.Minute {
		t.Errorf("second ejection: multiplier %d for %v, want 2 for 1m0s", s.Ejections, s.EjectedUntil.Sub(clk.Now()))
	}
	clk.Advance(time.Minute - time.Millisecond)
	if got := drive(t, b, 100, nil); got[addr(4)] != 0 {
		t.Errorf("1ms before the end of the second ejection, endpoint 4 picked %d times", got[addr(4)])
	}
	clk.Advance(time.Millisecond)
	if got := drive(t, b, 100, nil); got[addr(4)] != 10 {
		t.Errorf("after the second ejection, endpoint 4 picked %d times of 100, want 10", got[addr(4)])
	}

	// Healthy for 2 intervals (20s): the multiplier drops from 2 to 0, so
	// the next ejection is 1 × 30s again.
	clk.Advance(20 * time.Second)
	drive(t, b, 50, bad)
	if s := b.Status()[4]; s.Ejections != 1 || s.EjectedUntil.Sub(clk.Now()) != 30*time.Second {
		t.Errorf("ejection after 20s healthy: multiplier %d for %v, want 1 for 30s", s.Ejections, s.EjectedUntil.Sub(clk.Now()))
	}
}

func TestOutlierMaxEjectionTime(t *testing.T) {
	clk := newClock()
	b := newBalancer(t, balancer.Config{
		Outlier: &balancer.OutlierConfig{Consecutive5xx: 1, BaseEjectionTime: time.Second, MaxEjectionTime: 3 * time.Second, MaxEjectionPercent: 50},
		Now:     clk.Now,
	}, endpoints(2))
	var got []time.Duration
	for range 5 {
		drive(t, b, 2, map[string]balancer.FailureKind{addr(0): balancer.Failure5xx})
		s := b.Status()[0]
		if !s.Ejected {
			t.Fatal("not ejected")
		}
		got = append(got, s.EjectedUntil.Sub(clk.Now()))
		clk.Advance(got[len(got)-1])
	}
	if fmt.Sprint(got) != "[1s 2s 3s 3s 3s]" {
		t.Errorf("ejection times %v, want [1s 2s 3s 3s 3s]", got)
	}
}

func TestOutlierMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		name        string
		endpoints   int
		cfg         balancer.OutlierConfig
		bad         int // the first bad endpoints fail every request
		wantEjected int
	}{
		{"10 endpoints, 10%: one of three", 10, balancer.OutlierConfig{}, 3, 1},
		{"10 endpoints, 30%: three", 10, balancer.OutlierConfig{MaxEjectionPercent: 30}, 5, 3},
		{"5 endpoints, 10%: none, as Envoy", 5, balancer.OutlierConfig{}, 2, 0},
		{"5 endpoints, 10%, AlwaysEjectOne: one", 5, balancer.OutlierConfig{AlwaysEjectOne: true}, 2, 1},
		{"4 endpoints, 100%: all", 4, balancer.OutlierConfig{MaxEjectionPercent: 100}, 4, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: balancer.RoundRobin, Outlier: &tt.cfg, Now: newClock().Now}, endpoints(tt.endpoints))
			bad := map[string]balancer.FailureKind{}
			for i := range tt.bad {
				bad[addr(i)] = balancer.Failure5xx
			}
			for range 20 * tt.endpoints {
				r, err := b.Pick(balancer.Request{})
				if errors.Is(err, balancer.ErrNoEndpoints) {
					break
				}
				r.Done(balancer.DoneInfo{Failure: bad[r.Endpoint.Address]})
			}
			if got := len(ejected(b)); got != tt.wantEjected {
				t.Errorf("ejected %v, want %d", ejected(b), tt.wantEjected)
			}
		})
	}
}

func TestOutlierCounters(t *testing.T) {
	errReset := errors.New("connection reset by peer")
	tests := []struct {
		name      string
		cfg       balancer.OutlierConfig
		outcomes  []balancer.DoneInfo // reported in turn for endpoint 0
		wantEject bool
	}{
		{"5 × 500", balancer.OutlierConfig{}, repeat(5, balancer.DoneInfo{Failure: balancer.Failure5xx}), true},
		{"4 × 500", balancer.OutlierConfig{}, repeat(4, balancer.DoneInfo{Failure: balancer.Failure5xx}), false},
		{"a success resets", balancer.OutlierConfig{}, join(
			repeat(4, balancer.DoneInfo{Failure: balancer.Failure5xx}),
			repeat(1, balancer.DoneInfo{}),
			repeat(4, balancer.DoneInfo{Failure: balancer.Failure5xx})), false},
		{"caller cancellations are not counted", balancer.OutlierConfig{}, join(
			repeat(4, balancer.DoneInfo{Failure: balancer.Failure5xx}),
			repeat(3, balancer.DoneInfo{Err: context.Canceled}),
			repeat(1, balancer.DoneInfo{Failure: balancer.Failure5xx})), true},
		{"transport errors count as local-origin", balancer.OutlierConfig{}, repeat(5, balancer.DoneInfo{Err: errReset}), true},
		{"5xx off", balancer.OutlierConfig{Consecutive5xx: -1}, repeat(20, balancer.DoneInfo{Failure: balancer.FailureGateway}), false},
		{"gateway: 500s do not count", balancer.OutlierConfig{Consecutive5xx: -1, ConsecutiveGatewayErrors: 3}, repeat(20, balancer.DoneInfo{Failure: balancer.Failure5xx}), false},
		{"gateway: 3 × 503", balancer.OutlierConfig{Consecutive5xx: -1, ConsecutiveGatewayErrors: 3}, repeat(3, balancer.DoneInfo{Failure: balancer.FailureGateway}), true},
		{"gateway: connect failures count", balancer.OutlierConfig{Consecutive5xx: -1, ConsecutiveGatewayErrors: 3}, repeat(3, balancer.DoneInfo{Failure: balancer.FailureLocalOrigin}), true},
		{"split: connect failures count apart", balancer.OutlierConfig{Consecutive5xx: 3, SplitLocalOriginErrors: true, ConsecutiveLocalOriginFailures: 4}, join(
			repeat(2, balancer.DoneInfo{Failure: balancer.Failure5xx}),
			repeat(3, balancer.DoneInfo{Failure: balancer.FailureLocalOrigin})), false},
		{"split: 4 connect failures", balancer.OutlierConfig{SplitLocalOriginErrors: true, ConsecutiveLocalOriginFailures: 4}, repeat(4, balancer.DoneInfo{Failure: balancer.FailureLocalOrigin}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.MaxEjectionPercent = 100
			b := newBalancer(t, balancer.Config{Policy: balancer.RingHash, Outlier: &cfg, Now: newClock().Now}, endpoints(2))
			// Find a hash that lands on endpoint 0.
			req := balancer.Request{HasHash: true}
			for h := uint64(0); ; h++ {
				req.Hash = h
				if r, _ := b.Pick(req); r.Endpoint.Address == addr(0) {
					r.Done(balancer.DoneInfo{})
					break
				} else {
					r.Done(balancer.DoneInfo{})
				}
			}
			for _, o := range tt.outcomes {
				r, err := b.Pick(req)
				if err != nil {
					t.Fatal(err)
				}
				if r.Endpoint.Address != addr(0) {
					break // ejected: the key walked on
				}
				r.Done(o)
			}
			if got := len(ejected(b)) == 1; got != tt.wantEject {
				t.Errorf("ejected = %v, want %v", got, tt.wantEject)
			}
		})
	}
}

func repeat(n int, di balancer.DoneInfo) []balancer.DoneInfo {
	out := make([]balancer.DoneInfo, n)
	for i := range out {
		out[i] = di
	}
	return out
}

func join(parts ...[]balancer.DoneInfo) []balancer.DoneInfo {
	var out []balancer.DoneInfo
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func TestOutlierStateSurvivesUpdate(t *testing.T) {
	clk := newClock()
	b := newBalancer(t, balancer.Config{Outlier: &balancer.OutlierConfig{}, Now: clk.Now}, endpoints(10))
	drive(t, b, 50, map[string]balancer.FailureKind{addr(4): balancer.Failure5xx})
	// The set changes, endpoint 4 stays: still ejected.
	if err := b.Update(endpoints(11)); err != nil {
		t.Fatal(err)
	}
	if got := drive(t, b, 110, nil); got[addr(4)] != 0 {
		t.Errorf("after an Update, ejected endpoint picked %d times", got[addr(4)])
	}
	clk.Advance(30 * time.Second)
	if got := drive(t, b, 110, nil); got[addr(4)] != 10 {
		t.Errorf("after its ejection time, endpoint 4 picked %d times of 110, want 10", got[addr(4)])
	}
}

func TestOutlierAllEjected(t *testing.T) {
	clk := newClock()
	b := newBalancer(t, balancer.Config{Outlier: &balancer.OutlierConfig{Consecutive5xx: 1, MaxEjectionPercent: 100}, Now: clk.Now}, endpoints(2))
	drive(t, b, 2, map[string]balancer.FailureKind{addr(0): balancer.Failure5xx, addr(1): balancer.Failure5xx})
	_, err := b.Pick(balancer.Request{})
	if !errors.Is(err, balancer.ErrNoEndpoints) || err.Error() != "balancer: no endpoint available: 0 of 2 endpoints unhealthy, 2 ejected by outlier detection" {
		t.Fatalf("Pick with every endpoint ejected: %v", err)
	}
	clk.Advance(30 * time.Second)
	if got := drive(t, b, 10, nil); got[addr(0)] != 5 || got[addr(1)] != 5 {
		t.Errorf("after the ejection time: picks %v, want 5 each", got)
	}
}
