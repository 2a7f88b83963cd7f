package meshtest_test

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlet/meshlet/meshtest"
)

var epoch = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestClockFiresInTimeOrder(t *testing.T) {
	clock := meshtest.NewClock(epoch)
	var fired []string
	at := func(name string) func() {
		return func() { fired = append(fired, fmt.Sprintf("%s@%v", name, clock.Now().Sub(epoch))) }
	}
	clock.AfterFunc(3*time.Second, at("c"))
	clock.AfterFunc(time.Second, at("a"))
	clock.AfterFunc(time.Second, at("a2")) // due with a: after it, in the order set
	clock.AfterFunc(2*time.Second, func() {
		at("b")()
		clock.AfterFunc(500*time.Millisecond, at("b+")) // due within the same Advance
		clock.AfterFunc(time.Hour, at("late"))
	})
	if got, want := clock.Pending(), []time.Duration{time.Second, time.Second, 2 * time.Second, 3 * time.Second}; !slices.Equal(got, want) {
		t.Fatalf("Pending() = %v, want %v", got, want)
	}
	clock.Advance(999 * time.Millisecond)
	if len(fired) != 0 {
		t.Fatalf("fired before they were due: %v", fired)
	}
	clock.Advance(2001 * time.Millisecond)
	if want := []string{"a@1s", "a2@1s", "b@2s", "b+@2.5s", "c@3s"}; !slices.Equal(fired, want) {
		t.Errorf("fired %v, want %v", fired, want)
	}
	if got := clock.Now().Sub(epoch); got != 3*time.Second {
		t.Errorf("Now() is %v after the epoch, want 3s", got)
	}
	if got, want := clock.Pending(), []time.Duration{time.Hour - time.Second}; !slices.Equal(got, want) {
		t.Errorf("Pending() = %v, want %v", got, want)
	}
}

func TestClockStop(t *testing.T) {
	clock := meshtest.NewClock(epoch)
	var calls atomic.Int32
	stop := clock.AfterFunc(time.Second, func() { calls.Add(1) })
	if !stop() {
		t.Error("stop of a pending timer returned false")
	}
	if stop() {
		t.Error("a second stop returned true")
	}
	clock.Advance(time.Minute)
	fired := clock.AfterFunc(time.Second, func() { calls.Add(1) })
	clock.Advance(time.Second)
	if fired() {
		t.Error("stop of a fired timer returned true")
	}
	if got := calls.Load(); got != 1 {
		t.Errorf("%d calls, want 1: the stopped timer fired, or the other did not", got)
	}
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("Pending() = %v, want none", got)
	}
}

// A timer of zero or less fires at once, without Advance, as
// time.AfterFunc's does.
func TestClockFiresDueTimersAtOnce(t *testing.T) {
	clock := meshtest.NewClock(epoch)
	var calls atomic.Int32
	clock.AfterFunc(0, func() { calls.Add(1) })
	clock.AfterFunc(-time.Second, func() { calls.Add(1) })
	meshtest.WaitUntil(t, 5*time.Second, "both timers to fire", func() bool { return calls.Load() == 2 })
	if got := clock.Now(); !got.Equal(epoch) {
		t.Errorf("Now() = %v, want the clock unmoved", got)
	}
}

// A test moves time on by the grace period instead of waiting it out.
func ExampleClock() {
	clock := meshtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	clock.AfterFunc(10*time.Second, func() { fmt.Println("grace over at", clock.Now().Format(time.TimeOnly)) })
	stop := clock.AfterFunc(time.Minute, func() { fmt.Println("not reached") })
	fmt.Println("pending:", clock.Pending())

	clock.Advance(9 * time.Second)
	fmt.Println("after 9s, pending:", clock.Pending())
	clock.Advance(time.Second)
	fmt.Println("stopped:", stop())
	fmt.Println("pending:", clock.Pending())
	// Output:
	// pending: [10s 1m0s]
	// after 9s, pending: [1s 51s]
	// grace over at 00:00:10
	// stopped: true
	// pending: []
}
