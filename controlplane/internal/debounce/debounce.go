// Package debounce coalesces a burst of changes into one action, as
// istiod debounces its pushes (PILOT_DEBOUNCE_AFTER, PILOT_DEBOUNCE_MAX):
// the action waits until no change has come for a quiet time, but never
// more than Max after the first change it holds. A steady stream of
// changes is still acted on, every Max.
//
// The quiet time adapts to the changes held (Settings.First): a lone
// change, or a burst whose changes come close together (one save's
// writes, a script copying files), waits First; a burst whose changes come
// further apart waits twice its longest gap, up to After; and changes
// that start within After of the last take, the rest of a burst the short
// wait cut, wait After. A steady stream of changes costs at most one
// action more than a fixed After would. With First unset, every quiet
// time is After.
//
// A Window holds no timer and starts no goroutine: time is passed in, and
// its owner arms a timer for the time Add returns, and calls Take when it
// fires.
package debounce

import "time"

// Settings are a Window's delays.
type Settings struct {
	// After is the longest quiet time after the last change before the
	// changes are acted on.
	After time.Duration
	// First is the shortest: the quiet time after a lone change, and
	// after changes that came less than First/2 apart. Zero, or a First
	// above After, means After: a fixed quiet time.
	First time.Duration
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
	gap   time.Duration // the longest between two changes of the batch
	taken time.Time     // when the last batch was taken
	cut   bool          // the batch began within After of the last take
}

// New returns an empty window.
func New(s Settings) *Window {
	s.Max = max(s.Max, s.After)
	if s.First <= 0 || s.First > s.After {
		s.First = s.After
	}
	return &Window{s: s}
}

// Add records a change made at now, and returns when the window is due:
// After past now, but no later than Max past the first change.
func (w *Window) Add(now time.Time) (due time.Time) {
	if w.batch.Events == 0 {
		w.batch.First = now
		w.cut = !w.taken.IsZero() && now.Sub(w.taken) < w.s.After
	} else {
		w.gap = max(w.gap, now.Sub(w.batch.Last))
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
	wait := min(max(2*w.gap, w.s.First), w.s.After)
	if w.cut {
		wait = w.s.After
	}
	quiet := w.batch.Last.Add(wait)
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
	w.batch, w.gap, w.taken = Batch{}, 0, now
	return b, true
}
