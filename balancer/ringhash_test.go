package balancer_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/meshlet/meshlet/balancer"
)

// keys maps n keys to the endpoint RingHash picks for each.
func keys(t *testing.T, b *balancer.Balancer, n int) []string {
	t.Helper()
	out := make([]string, n)
	for i := range out {
		r, err := b.Pick(balancer.Request{Hash: balancer.HashString(fmt.Sprintf("user-%d", i)), HasHash: true})
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		r.Done(balancer.DoneInfo{})
		out[i] = r.Endpoint.Address
	}
	return out
}

func TestRingHashSameKeySameEndpoint(t *testing.T) {
	const n = 1000
	b := newBalancer(t, balancer.Config{Policy: balancer.RingHash}, endpoints(10))
	first := keys(t, b, n)
	if again := keys(t, b, n); fmt.Sprint(again) != fmt.Sprint(first) {
		t.Errorf("the same keys went to different endpoints on a second pass")
	}
	// Another balancer (another client) given the same set in another
	// order maps every key the same way.
	eps := endpoints(10)
	rand.Shuffle(len(eps), func(i, j int) { eps[i], eps[j] = eps[j], eps[i] })
	other := newBalancer(t, balancer.Config{Policy: balancer.RingHash}, eps)
	if got := keys(t, other, n); fmt.Sprint(got) != fmt.Sprint(first) {
		t.Errorf("a second balancer with the same set, shuffled, maps keys differently")
	}
	spread := map[string]int{}
	for _, a := range first {
		spread[a]++
	}
	t.Logf("ring hash, %d keys over 10 endpoints: %v", n, spread)
	if len(spread) != 10 {
		t.Errorf("keys reached %d endpoints, want 10", len(spread))
	}
}

func TestRingHashRemoveAndAddBack(t *testing.T) {
	const n = 1000
	tests := []struct {
		name   string
		remove func(b *balancer.Balancer) error
	}{
		{"removed from EDS", func(b *balancer.Balancer) error {
			return b.Update(append(endpoints(10)[:3:3], endpoints(10)[4:]...))
		}},
		{"unhealthy in EDS", func(b *balancer.Balancer) error {
			eps := endpoints(10)
			eps[3].Unhealthy = true
			return b.Update(eps)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := newBalancer(t, balancer.Config{Policy: balancer.RingHash}, endpoints(10))
			before := keys(t, b, n)
			if err := tt.remove(b); err != nil {
				t.Fatal(err)
			}
			after := keys(t, b, n)
			moved, ofRemoved := 0, 0
			for i := range before {
				if before[i] == addr(3) {
					ofRemoved++
				}
				if before[i] != after[i] {
					moved++
					if before[i] != addr(3) {
						t.Errorf("key %d moved from %s to %s, but only keys of %s should move", i, before[i], after[i], addr(3))
					}
				}
				if after[i] == addr(3) {
					t.Errorf("key %d still on the removed endpoint", i)
				}
			}
			frac := float64(moved) / n
			t.Logf("ring hash, 1 of 10 endpoints %s: %d of %d keys moved (%.3f); the removed endpoint held %d", tt.name, moved, n, frac, ofRemoved)
			if frac > 0.15 {
				t.Errorf("%.3f of keys moved, want at most 0.15", frac)
			}
			if err := b.Update(endpoints(10)); err != nil {
				t.Fatal(err)
			}
			back := keys(t, b, n)
			for i := range before {
				if back[i] != before[i] {
					t.Errorf("key %d: %s after adding back, want %s as before", i, back[i], before[i])
				}
			}
		})
	}
}

func TestRingHashWeights(t *testing.T) {
	const n = 10000
	eps := endpoints(4)
	for i := range eps {
		eps[i].Weight = uint32(i + 1)
	}
	b := newBalancer(t, balancer.Config{Policy: balancer.RingHash}, eps)
	got := map[string]int{}
	for _, a := range keys(t, b, n) {
		got[a]++
	}
	for i := range eps {
		share := float64(got[addr(i)]) / n
		want := float64(i+1) / 10
		t.Logf("ring hash, weight %d: share %.3f (want %.2f ± 0.03)", i+1, share, want)
		if share < want-0.03 || share > want+0.03 {
			t.Errorf("weight %d: share %.3f, want %.2f ± 0.03", i+1, share, want)
		}
	}
}

func TestRingHashWithoutHashSpreads(t *testing.T) {
	b := newBalancer(t, balancer.Config{Policy: balancer.RingHash}, endpoints(4))
	got := pickN(t, b, 4000, balancer.Request{}, balancer.DoneInfo{})
	for i := range 4 {
		if c := got[addr(i)]; c < 700 || c > 1300 {
			t.Errorf("without a hash, endpoint %d got %d of 4000 picks, want 1000 ± 300", i, c)
		}
	}
}

func TestRingHashRingSize(t *testing.T) {
	// A tiny ring still works, and a minimum above the default is honoured
	// (checked through the spread of keys, which a bigger ring evens out).
	for _, cfg := range []balancer.RingHashConfig{
		{MinRingSize: 1, MaxRingSize: 1},
		{MinRingSize: 1 << 16},
	} {
		b := newBalancer(t, balancer.Config{Policy: balancer.RingHash, RingHash: cfg}, endpoints(5))
		got := map[string]int{}
		for _, a := range keys(t, b, 1000) {
			got[a]++
		}
		t.Logf("ring %+v: keys per endpoint %v", cfg, got)
		if cfg.MinRingSize > 1 {
			for i := range 5 {
				if c := got[addr(i)]; c < 150 || c > 250 {
					t.Errorf("ring %+v: endpoint %d holds %d of 1000 keys, want 200 ± 50", cfg, i, c)
				}
			}
		}
	}
}

func TestRingHashWalksPastEjected(t *testing.T) {
	clk := newClock()
	b := newBalancer(t, balancer.Config{Policy: balancer.RingHash, Outlier: &balancer.OutlierConfig{Consecutive5xx: 1}, Now: clk.Now}, endpoints(10))
	before := keys(t, b, 1000)
	// Eject endpoint 3 with one 5xx on one of its keys.
	for i, a := range before {
		if a == addr(3) {
			r, err := b.Pick(balancer.Request{Hash: balancer.HashString(fmt.Sprintf("user-%d", i)), HasHash: true})
			if err != nil {
				t.Fatal(err)
			}
			r.Done(balancer.DoneInfo{Failure: balancer.Failure5xx})
			break
		}
	}
	during := keys(t, b, 1000)
	for i := range before {
		if (before[i] == addr(3)) != (during[i] != before[i]) || during[i] == addr(3) {
			t.Fatalf("key %d: %s before, %s while %s is ejected; want only its keys to move", i, before[i], during[i], addr(3))
		}
	}
	clk.Advance(30 * time.Second)
	if after := keys(t, b, 1000); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("after the ejection, keys did not all return")
	}
}
