package policy_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/meshlet/meshlet/policy"
)

var t0 = time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)

// allowed counts the requests of key a limiter allows among n sent
// evenly over d from start.
func allowed(l *policy.Limiter, key string, start time.Time, n int, d time.Duration) int {
	ok := 0
	for i := range n {
		if l.Allow(start.Add(d*time.Duration(i)/time.Duration(n)), key) == nil {
			ok++
		}
	}
	return ok
}

func TestLimiterRateAndBurst(t *testing.T) {
	l := policy.NewLimiter("default/rl", policy.RateLimit{Rate: 50, Burst: 10})
	// 200/s offered for 4 s: the burst, then 50 a second.
	if got := allowed(l, "", t0, 800, 4*time.Second); got < 208 || got > 211 {
		t.Errorf("allowed %d of 800 over 4s, want 210 (burst 10 + 4s at 50/s)", got)
	}
}

func TestLimiterRefusal(t *testing.T) {
	l := policy.NewLimiter("default/rl", policy.RateLimit{Rate: 2, Burst: 1})
	if err := l.Allow(t0, ""); err != nil {
		t.Fatalf("first request: %v", err)
	}
	err := l.Allow(t0.Add(100*time.Millisecond), "")
	var rle *policy.RateLimitError
	if !errors.As(err, &rle) || !errors.Is(err, policy.ErrRateLimited) {
		t.Fatalf("second request: %v, want a *RateLimitError wrapping ErrRateLimited", err)
	}
	if rle.Policy != "default/rl" || rle.RetryAfter != 400*time.Millisecond || rle.RetryAfterSeconds() != 1 {
		t.Errorf("got %+v (%ds), want default/rl after 400ms (1s)", rle, rle.RetryAfterSeconds())
	}
	slow := policy.NewLimiter("x", policy.RateLimit{Rate: 1.0 / 60, Burst: 1})
	_ = slow.Allow(t0, "")
	if err := slow.Allow(t0.Add(time.Second), ""); !errors.As(err, &rle) || rle.RetryAfterSeconds() != 59 {
		t.Errorf("1/min bucket: %v, want retry after 59s", err)
	}
}

func TestLimiterKeyed(t *testing.T) {
	l := policy.NewLimiter("k", policy.RateLimit{Rate: 10, Burst: 5, MaxBuckets: 2})
	// a floods; b's share is untouched.
	if got := allowed(l, "a", t0, 1000, time.Second); got < 14 || got > 16 {
		t.Errorf("a: allowed %d, want 15", got)
	}
	if got := allowed(l, "b", t0.Add(time.Second), 5, time.Millisecond); got != 5 {
		t.Errorf("b after a's flood: allowed %d of 5, want 5", got)
	}
	// No key: the shared bucket, apart from a's and b's.
	if got := allowed(l, "", t0.Add(time.Second), 5, time.Millisecond); got != 5 {
		t.Errorf("no key: allowed %d of 5, want 5", got)
	}
}

func TestLimiterOverflow(t *testing.T) {
	l := policy.NewLimiter("k", policy.RateLimit{Rate: 1, Burst: 2, MaxBuckets: 2})
	now := t0
	for _, k := range []string{"a", "b"} {
		_ = l.Allow(now, k) // each bucket not full
	}
	// Keys past the bound, while a and b are in use, share the overflow
	// bucket: 2 between them, not 2 each.
	ok := 0
	for i := range 10 {
		if l.Allow(now, fmt.Sprint("new", i)) == nil {
			ok++
		}
	}
	if ok != 2 || l.Buckets() != 2 {
		t.Errorf("overflow allowed %d (buckets %d), want 2 (2)", ok, l.Buckets())
	}
	// Once a's bucket is full again, its slot is free for a new key.
	now = now.Add(2 * time.Second)
	if err := l.Allow(now, "c"); err != nil || l.Buckets() != 2 {
		t.Errorf("c after a refilled: %v (buckets %d), want a bucket of its own", err, l.Buckets())
	}
	if got := allowed(l, "c", now, 2, time.Millisecond); got != 1 {
		t.Errorf("c: allowed %d more, want 1 (burst 2)", got)
	}
}

func BenchmarkLimiterAllow(b *testing.B) {
	for _, bc := range []struct {
		name string
		s    policy.RateLimit
		key  string
	}{
		{"shared", policy.RateLimit{Rate: 1e12, Burst: 1 << 30}, ""},
		{"keyed", policy.RateLimit{Rate: 1e12, Burst: 1 << 30, MaxBuckets: 100}, "spiffe://cluster.local/ns/default/sa/caller"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := policy.NewLimiter("bench", bc.s)
			now := time.Now()
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Allow(now, bc.key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
