// Package debounce coalesces a burst of changes into one action, as
// istiod debounces its pushes (PILOT_DEBOUNCE_AFTER, PILOT_DEBOUNCE_MAX):
// the action waits until no change has come for After, but never more
// than Max after the first change it holds. A single change is acted on
// After it came; a steady stream of changes still is, every Max.
//
// A Window holds no timer and starts no goroutine: time is passed in, and
// its owner arms a timer for the time Add returns, and calls Take when it
// fires.
package debounce

import "time"

// Settings are a Window's two delays.
type Settings struct {
	// After is the quiet time after the last change before the changes
	// are acted on.
	After time.Duration
	// Max bounds the wait after the first change; a Max below After
	// means After.
	Max time.Duration
}

// Batch is what a Window held when it was taken.
type Batch struct {
	// Events is how many changes were coalesced.
	Events int
	// First and Last are when the first and the last of them came.
	First, Last time.Time
	// Wait is how long the first change waited: from First to the take.
	Wait time.Duration
}

// Window is the changes not yet acted on. Its zero value is not usable;
// make one with New. It is not safe for concurrent use.
type Window struct {
	s     Settings
	batch Batch
}

// New returns an empty window.
func New(s Settings) *Window {
	s.Max = max(s.Max, s.After)
	return &Window{s: s}
}

// Add records a change made at now, and returns when the window is due:
// After past now, but no later than Max past the first change.
func (w *Window) Add(now time.Time) (due time.Time) {
	if w.batch.Events == 0 {
		w.batch.First = now
	}
	w.batch.Events++
	w.batch.Last = now
	due, _ = w.Due()
	return due
}

// Due returns when the changes held are due, and false if there are none.
func (w *Window) Due() (time.Time, bool) {
	if w.batch.Events == 0 {
		return time.Time{}, false
	}
	quiet := w.batch.Last.Add(w.s.After)
	bound := w.batch.First.Add(w.s.Max)
	if bound.Before(quiet) {
		return bound, true
	}
	return quiet, true
}

// Take empties the window and returns what it held if it is due at now.
// If it is not, it returns false and holds on to its changes.
func (w *Window) Take(now time.Time) (Batch, bool) {
	due, ok := w.Due()
	if !ok || now.Before(due) {
		return Batch{}, false
	}
	b := w.batch
	b.Wait = now.Sub(b.First)
	w.batch = Batch{}
	return b, true
}
