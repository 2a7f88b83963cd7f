// Package clock is the system clock in the shape of the Clock interfaces
// that controlplane and mesh accept (Now and AfterFunc), so that their
// timers can run on a fake clock in tests (meshtest.Clock).
package clock

import "time"

// System is the real clock.
type System struct{}

// Now returns time.Now().
func (System) Now() time.Time { return time.Now() }

// AfterFunc calls f in its own goroutine once d has passed, as
// time.AfterFunc does; stop is the timer's Stop.
func (System) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	return time.AfterFunc(d, f).Stop
}
