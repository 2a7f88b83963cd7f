package meshtest

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// Clock is a fake clock for tests of timers, such as a control plane's
// warm-up and registration grace (controlplane.WithClock): its time stands
// still until the test moves it with Advance, and a timer fires when
// Advance passes it, so that a test of a 10s timer neither waits 10s nor
// depends on how fast the machine is.
//
// Its methods are safe for concurrent use. Now and AfterFunc never block.
type Clock struct {
	advancing sync.Mutex // one Advance at a time

	mu     sync.Mutex
	now    time.Time
	seq    uint64 // orders timers that fire at the same time
	timers []*fakeTimer
}

type fakeTimer struct {
	at   time.Time
	seq  uint64
	f    func()
	done bool // fired or stopped; guarded by Clock.mu
}

// NewClock returns a clock that reads start until it is advanced.
func NewClock(start time.Time) *Clock { return &Clock{now: start} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// AfterFunc arranges for f to be called once the clock has moved d past
// its time now. f is called by Advance, on the goroutine that calls
// Advance, and never from within AfterFunc, so f may take locks that the
// caller of AfterFunc holds. A d of zero or less calls f at once on a
// goroutine of its own, as time.AfterFunc does.
//
// stop cancels the call. It reports whether it did so before f was called,
// as (*time.Timer).Stop does.
func (c *Clock) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	t := &fakeTimer{at: c.now.Add(d), seq: c.seq, f: f}
	if d <= 0 {
		t.done = true
		go f()
		return func() bool { return false }
	}
	c.timers = append(c.timers, t)
	return func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		if t.done {
			return false
		}
		t.done = true
		c.timers = slices.DeleteFunc(c.timers, func(p *fakeTimer) bool { return p == t })
		return true
	}
}

// Advance moves the clock on by d. It calls the functions of the timers it
// passes one by one, soonest first, with Now reading the time each was due,
// and returns when they have returned. A timer that one of them sets within
// the span fires too. The functions must not call Advance.
func (c *Clock) Advance(d time.Duration) {
	c.advancing.Lock()
	defer c.advancing.Unlock()
	c.mu.Lock()
	end := c.now.Add(d)
	for {
		i := c.nextLocked()
		if i < 0 || c.timers[i].at.After(end) {
			break
		}
		t := c.timers[i]
		c.timers = slices.Delete(c.timers, i, i+1)
		t.done = true
		if t.at.After(c.now) {
			c.now = t.at
		}
		c.mu.Unlock()
		t.f()
		c.mu.Lock()
	}
	if end.After(c.now) {
		c.now = end
	}
	c.mu.Unlock()
}

// Pending returns how long from now each timer that is set will fire,
// soonest first. A test waits for the code under test to set a timer, and
// checks its delay, before it advances the clock past it.
func (c *Clock) Pending() []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := slices.Clone(c.timers)
	slices.SortFunc(ts, compareTimers)
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.at.Sub(c.now)
	}
	return out
}

// nextLocked returns the index of the timer due first, or -1.
func (c *Clock) nextLocked() int {
	next := -1
	for i, t := range c.timers {
		if next < 0 || compareTimers(t, c.timers[next]) < 0 {
			next = i
		}
	}
	return next
}

func compareTimers(a, b *fakeTimer) int {
	if c := a.at.Compare(b.at); c != 0 {
		return c
	}
	return cmp.Compare(a.seq, b.seq)
}
