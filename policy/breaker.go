package policy

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerSettings configure a destination's breaker. Zero fields have
// defaults: ConsecutiveFailures 5, OpenFor 30s.
type BreakerSettings struct {
	// ConsecutiveFailures is how many failed requests in a row open the
	// breaker.
	ConsecutiveFailures uint32
	// OpenFor is how long the breaker stays open before it lets one
	// probe through.
	OpenFor time.Duration
}

func (s BreakerSettings) withDefaults() BreakerSettings {
	if s.ConsecutiveFailures == 0 {
		s.ConsecutiveFailures = 5
	}
	if s.OpenFor <= 0 {
		s.OpenFor = 30 * time.Second
	}
	return s
}

// Verdict is how a request the breaker let through ended, for the
// breaker.
type Verdict int

const (
	// Success closes a half-open breaker and ends a run of failures.
	Success Verdict = iota
	// Failure counts toward opening the breaker, and reopens a half-open
	// one.
	Failure
	// Ignored says nothing about the destination: the caller ended the
	// request.
	Ignored
)

var (
	errFailed  = errors.New("failed")
	errIgnored = errors.New("ignored")
)

// Breaker fails requests to one destination fast after it failed
// ConsecutiveFailures times in a row, for OpenFor; then exactly one
// probe goes through, and its success closes the breaker, its failure
// opens it again. It is gobreaker's two-step breaker. It is safe for
// concurrent use and never blocks beyond a short lock.
//
// Outlier detection (package balancer) ejects one failing endpoint and
// keeps sending to the others; concurrency limits (Gate) refuse what is
// over a count whatever the outcomes; the Breaker stops calls to the
// whole destination when all of it keeps failing.
type Breaker struct {
	s  BreakerSettings
	cb *gobreaker.TwoStepCircuitBreaker[struct{}]
	// Written when it opens, read by State and Opens.
	opens    atomic.Uint64
	openedAt atomic.Int64 // unix nanoseconds
}

// NewBreaker returns a closed breaker.
func NewBreaker(s BreakerSettings) *Breaker {
	s = s.withDefaults()
	n := s.ConsecutiveFailures
	b := &Breaker{s: s}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		MaxRequests: 1, // one probe when half-open
		Timeout:     s.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= n },
		IsExcluded:  func(err error) bool { return err == errIgnored },
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				b.openedAt.Store(time.Now().UnixNano())
				b.opens.Add(1)
			}
		},
	})
	return b
}

// Settings returns the breaker's settings, with defaults filled in.
func (b *Breaker) Settings() BreakerSettings { return b.s }

// Ticket is a request the breaker let through; Report says how it ended.
// The zero Ticket, of no breaker, reports nowhere.
type Ticket struct{ done func(error) }

// Report tells the breaker how the request ended. Call it once.
func (t Ticket) Report(v Verdict) {
	if t.done == nil {
		return
	}
	switch v {
	case Success:
		t.done(nil)
	case Failure:
		t.done(errFailed)
	default:
		t.done(errIgnored)
	}
}

// Allow lets a request through, or refuses it with an *OpenError while
// the breaker is open or its probe is in flight. A nil Breaker lets
// everything through.
func (b *Breaker) Allow() (Ticket, error) {
	if b == nil {
		return Ticket{}, nil
	}
	done, err := b.cb.Allow()
	if err != nil {
		return Ticket{}, &OpenError{Settings: b.s, Probing: errors.Is(err, gobreaker.ErrTooManyRequests)}
	}
	return Ticket{done: done}, nil
}

// OpenError is a request an open breaker refused.
type OpenError struct {
	Settings BreakerSettings
	// Probing is set when the breaker is half-open and its one probe is
	// in flight.
	Probing bool
}

func (e *OpenError) Error() string {
	if e.Probing {
		return "circuit breaker open: its one probe is in flight"
	}
	return fmt.Sprintf("circuit breaker open: %d consecutive failures, open for %v", e.Settings.ConsecutiveFailures, e.Settings.OpenFor)
}

// Is makes an OpenError match ErrCircuitOpen.
func (e *OpenError) Is(target error) bool { return target == ErrCircuitOpen }
