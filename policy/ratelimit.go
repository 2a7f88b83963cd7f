package policy

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// ErrRateLimited is wrapped by every *RateLimitError: a request was
// refused because a rate limit's bucket had no token for it.
var ErrRateLimited = errors.New("policy: rate limited")

// RateLimitError says which limit refused a request and when the bucket
// that refused it will next have a token. It wraps ErrRateLimited.
type RateLimitError struct {
	// Policy names the limit (Limiter.Name).
	Policy string
	// RetryAfter is the time until the refusing bucket holds a token.
	RetryAfter time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("policy: rate limited by %s (retry after %v)", e.Policy, e.RetryAfter)
}

// Unwrap returns ErrRateLimited.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// RetryAfterSeconds is RetryAfter in whole seconds, rounded up and at
// least 1: the value of an HTTP Retry-After header.
func (e *RateLimitError) RetryAfterSeconds() int64 {
	s := int64(math.Ceil(e.RetryAfter.Seconds()))
	return max(s, 1)
}

// RateLimit is the settings of a token bucket: it holds up to Burst
// tokens, gains Rate tokens a second, continuously, and each request
// takes one. It is comparable: two equal RateLimits make the same bucket.
type RateLimit struct {
	// Rate is tokens a second; it must be positive.
	Rate float64
	// Burst is the bucket's size, which it starts with; at least 1.
	Burst int
	// MaxBuckets bounds the buckets kept for keyed requests (see
	// Limiter.Allow); 0 means the limiter is not keyed, and every key
	// shares one bucket.
	MaxBuckets int
}

// Limiter enforces one RateLimit: one bucket, or, when keyed, one bucket
// per key (a caller's principal or a header's value), at most MaxBuckets
// of them, plus one for requests without a key.
//
// Past MaxBuckets, a new key takes the slot of the least recently used
// key only if that key's bucket is full again: a full bucket is what a
// new one would be, so nothing is forgotten. Otherwise the new key shares
// an overflow bucket, of the same settings, with every other key that
// found no slot. A flood of distinct keys therefore gets one bucket's
// rate between them, never a fresh burst per key.
//
// Its methods are safe for concurrent use and do not block. Time is
// passed in, as with rate.Limiter.AllowN.
type Limiter struct {
	name     string
	settings RateLimit
	shared   *rate.Limiter // unkeyed requests; and every request when not keyed

	allowed, limited atomic.Uint64 // cumulative, for metrics

	mu       sync.Mutex
	keys     map[string]*list.Element // of *keyedBucket; nil when not keyed
	lru      list.List                // most recently used first
	overflow *rate.Limiter
}

type keyedBucket struct {
	key string
	lim *rate.Limiter
}

// NewLimiter returns a Limiter for s whose buckets start full. name
// identifies it in errors.
func NewLimiter(name string, s RateLimit) *Limiter {
	l := &Limiter{name: name, settings: s, shared: s.bucket()}
	if s.MaxBuckets > 0 {
		l.keys = make(map[string]*list.Element)
		l.overflow = s.bucket()
	}
	return l
}

func (s RateLimit) bucket() *rate.Limiter {
	return rate.NewLimiter(rate.Limit(s.Rate), s.Burst)
}

// Name returns the name the limiter was made with.
func (l *Limiter) Name() string { return l.name }

// Settings returns the settings the limiter was made with.
func (l *Limiter) Settings() RateLimit { return l.settings }

// Allow takes a token at now from the bucket of key ("" for a request
// without one, or for every request of a limiter that is not keyed). It
// returns nil, or a *RateLimitError. It does not allocate when it allows
// a request whose key already has a bucket.
func (l *Limiter) Allow(now time.Time, key string) error {
	lim := l.shared
	if l.keys != nil && key != "" {
		lim = l.keyed(now, key)
	}
	if lim.AllowN(now, 1) {
		l.allowed.Add(1)
		return nil
	}
	l.limited.Add(1)
	return &RateLimitError{Policy: l.name, RetryAfter: l.untilToken(lim, now)}
}

// keyed returns the bucket of key, making one if there is room.
func (l *Limiter) keyed(now time.Time, key string) *rate.Limiter {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.keys[key]; ok {
		l.lru.MoveToFront(e)
		return e.Value.(*keyedBucket).lim
	}
	if len(l.keys) >= l.settings.MaxBuckets {
		oldest := l.lru.Back()
		b := oldest.Value.(*keyedBucket)
		if b.lim.TokensAt(now) < float64(l.settings.Burst) {
			return l.overflow
		}
		delete(l.keys, b.key)
		l.lru.Remove(oldest)
	}
	b := &keyedBucket{key: key, lim: l.settings.bucket()}
	l.keys[key] = l.lru.PushFront(b)
	return b.lim
}

// untilToken is the time from now until lim holds one token.
func (l *Limiter) untilToken(lim *rate.Limiter, now time.Time) time.Duration {
	missing := 1 - lim.TokensAt(now)
	if missing <= 0 || l.settings.Rate <= 0 {
		return 0
	}
	return time.Duration(missing / l.settings.Rate * float64(time.Second))
}

// Buckets returns the number of keyed buckets held, the overflow bucket
// not counted.
func (l *Limiter) Buckets() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.keys)
}
