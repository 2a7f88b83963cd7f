package policy

import (
	"time"

	"github.com/sony/gobreaker/v2"
)

// The state of a circuit breaker, as BreakerState.State names it.
const (
	BreakerClosed   = "closed"
	BreakerOpen     = "open"
	BreakerHalfOpen = "half-open"
)

// BreakerState is a breaker's state, for admin pages and metrics.
type BreakerState struct {
	Settings BreakerSettings
	// State is BreakerClosed, BreakerOpen or BreakerHalfOpen.
	State string
	// The counts of the current state (they restart at each change, and
	// while closed, every OpenFor): Requests admitted, and the outcomes
	// reported.
	Requests, Successes, Failures             uint32
	ConsecutiveSuccesses, ConsecutiveFailures uint32
	// Opens is the number of times the breaker opened, cumulative.
	Opens uint64
	// OpenedAt is when it last opened; zero if never.
	OpenedAt time.Time
}

// State returns the breaker's state now; a nil breaker is closed. It
// takes the breaker's lock.
func (b *Breaker) State() BreakerState {
	if b == nil {
		return BreakerState{State: BreakerClosed}
	}
	st := BreakerState{Settings: b.s, Opens: b.opens.Load()}
	switch b.cb.State() {
	case gobreaker.StateOpen:
		st.State = BreakerOpen
	case gobreaker.StateHalfOpen:
		st.State = BreakerHalfOpen
	default:
		st.State = BreakerClosed
	}
	c := b.cb.Counts()
	st.Requests, st.Successes, st.Failures = c.Requests, c.TotalSuccesses, c.TotalFailures
	st.ConsecutiveSuccesses, st.ConsecutiveFailures = c.ConsecutiveSuccesses, c.ConsecutiveFailures
	if at := b.openedAt.Load(); at != 0 {
		st.OpenedAt = time.Unix(0, at)
	}
	return st
}

// Opens returns how many times the breaker opened, cumulative; 0 for a
// nil breaker. It reads one atomic: cheap enough for a metrics callback.
func (b *Breaker) Opens() uint64 {
	if b == nil {
		return 0
	}
	return b.opens.Load()
}

// GateState is a Gate's limits and what is in flight against them.
type GateState struct {
	// Limits are those in force; nil means none.
	Limits *Limits
	// Requests, Retries and Connections are in flight now.
	Requests, Retries, Connections int64
	// RetriesAllowed is how many retries may be in flight now: the
	// budget's share of Requests, or MaxRetries; -1 for no limit.
	RetriesAllowed int64
}

// State returns the gate's limits and counts. It reads atomics only.
func (g *Gate) State() GateState {
	st := GateState{Limits: g.limits.Load(), Requests: g.requests.Load(), Retries: g.retries.Load(), Connections: g.conns.Load(), RetriesAllowed: -1}
	if l := st.Limits; l != nil {
		if l.MaxRetries != Unlimited {
			st.RetriesAllowed = int64(l.MaxRetries)
		}
		if l.Budget != nil {
			st.RetriesAllowed = l.Budget.Allowed(st.Requests)
		}
	}
	return st
}

// BucketState is one token bucket.
type BucketState struct {
	// Key is the bucket's key; empty for the shared bucket.
	Key string
	// Tokens is what the bucket holds now, up to the limiter's Burst.
	Tokens float64
}

// LimiterState is a Limiter's settings and buckets, for admin pages and
// metrics.
type LimiterState struct {
	Name     string
	Settings RateLimit
	// Shared is the bucket of requests without a key (of every request,
	// when the limiter is not keyed).
	Shared BucketState
	// Keyed are the keyed buckets, most recently used first, at most the
	// number asked for; Keys is how many there are in all.
	Keyed []BucketState
	Keys  int
	// Overflow is the bucket that keys without a slot share; nil when
	// the limiter is not keyed.
	Overflow *BucketState
	// Allowed and Limited count the requests the limiter allowed and
	// refused, cumulative.
	Allowed, Limited uint64
}

// State returns the limiter's buckets at now, with at most maxKeys keyed
// ones. It takes the limiter's lock for the keyed buckets, and does not
// change any bucket.
func (l *Limiter) State(now time.Time, maxKeys int) LimiterState {
	st := LimiterState{
		Name: l.name, Settings: l.settings,
		Shared:  BucketState{Tokens: l.shared.TokensAt(now)},
		Allowed: l.allowed.Load(), Limited: l.limited.Load(),
	}
	if l.keys == nil {
		return st
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	st.Keys = len(l.keys)
	st.Overflow = &BucketState{Tokens: l.overflow.TokensAt(now)}
	for e := l.lru.Front(); e != nil && len(st.Keyed) < maxKeys; e = e.Next() {
		b := e.Value.(*keyedBucket)
		st.Keyed = append(st.Keyed, BucketState{Key: b.key, Tokens: b.lim.TokensAt(now)})
	}
	return st
}

// Counts returns how many requests the limiter allowed and refused,
// cumulative. It reads atomics only.
func (l *Limiter) Counts() (allowed, limited uint64) { return l.allowed.Load(), l.limited.Load() }
