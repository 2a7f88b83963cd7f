package balancer_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshlet/meshlet/balancer"
)

// addr is the address of endpoint i.
func addr(i int) string { return fmt.Sprintf("10.0.0.%d:8080", i) }

// endpoints returns n healthy endpoints of priority 0 and weight 1.
func endpoints(n int) []balancer.Endpoint {
	eps := make([]balancer.Endpoint, n)
	for i := range eps {
		eps[i] = balancer.Endpoint{Address: addr(i)}
	}
	return eps
}

func newBalancer(t testing.TB, cfg balancer.Config, eps []balancer.Endpoint) *balancer.Balancer {
	t.Helper()
	b, err := balancer.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v): %v", cfg, err)
	}
	if err := b.Update(eps); err != nil {
		t.Fatalf("Update: %v", err)
	}
	return b
}

// pickN picks n times, reporting each request done at once with info, and
// counts the picks per address.
func pickN(t testing.TB, b balancer.Picker, n int, req balancer.Request, info balancer.DoneInfo) map[string]int {
	t.Helper()
	got := map[string]int{}
	for range n {
		r, err := b.Pick(req)
		if err != nil {
			t.Fatalf("Pick: %v", err)
		}
		got[r.Endpoint.Address]++
		r.Done(info)
	}
	return got
}

// clock is a fake clock for Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}
