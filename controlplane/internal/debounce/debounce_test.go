package debounce_test

import (
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane/internal/debounce"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

// One change is due After it came, not before.
func TestOneChangeIsDueAfter(t *testing.T) {
	w := debounce.New(debounce.Settings{After: 20 * time.Millisecond, Max: time.Second})
	if _, ok := w.Due(); ok {
		t.Fatal("an empty window is due")
	}
	if due := w.Add(at(0)); !due.Equal(at(20 * time.Millisecond)) {
		t.Fatalf("due at %v, want 20ms", due.Sub(t0))
	}
	if _, ok := w.Take(at(19 * time.Millisecond)); ok {
		t.Fatal("taken at 19ms, before its 20ms")
	}
	b, ok := w.Take(at(20 * time.Millisecond))
	if !ok {
		t.Fatal("not taken at 20ms")
	}
	if b.Events != 1 || b.Wait != 20*time.Millisecond || !b.First.Equal(t0) || !b.Last.Equal(t0) {
		t.Errorf("batch %+v, want 1 event that waited 20ms", b)
	}
	if _, ok := w.Take(at(time.Hour)); ok {
		t.Error("taken twice")
	}
}

// A change every 5ms for 200ms is one batch, due After the last, since
// that is within Max of the first.
func TestBurstIsOneBatch(t *testing.T) {
	w := debounce.New(debounce.Settings{After: 20 * time.Millisecond, Max: time.Second})
	batches := 0
	var last debounce.Batch
	for now := time.Duration(0); now <= 300*time.Millisecond; now += time.Millisecond {
		if now <= 200*time.Millisecond && now%(5*time.Millisecond) == 0 {
			w.Add(at(now))
		}
		if b, ok := w.Take(at(now)); ok {
			batches++
			last = b
		}
	}
	if batches != 1 {
		t.Fatalf("%d batches, want 1", batches)
	}
	if last.Events != 41 || last.Wait != 220*time.Millisecond {
		t.Errorf("batch of %d events that waited %v, want 41 that waited 220ms", last.Events, last.Wait)
	}
}

// Changes that never stop are still acted on, every Max.
func TestMaxBoundsTheWait(t *testing.T) {
	w := debounce.New(debounce.Settings{After: 20 * time.Millisecond, Max: 100 * time.Millisecond})
	var waits []time.Duration
	for now := time.Duration(0); now < 350*time.Millisecond; now += time.Millisecond {
		if now%(5*time.Millisecond) == 0 {
			if due := w.Add(at(now)); due.Sub(t0) > now+20*time.Millisecond {
				t.Fatalf("due %v after a change at %v, later than After", due.Sub(t0), now)
			}
		}
		if b, ok := w.Take(at(now)); ok {
			waits = append(waits, b.Wait)
		}
	}
	if len(waits) != 3 {
		t.Fatalf("%d batches in 350ms of changes, want 3 (every 100ms)", len(waits))
	}
	for _, wait := range waits {
		if wait != 100*time.Millisecond {
			t.Errorf("a batch waited %v, want Max, 100ms", wait)
		}
	}
}

// A Max below After means After.
func TestMaxBelowAfter(t *testing.T) {
	w := debounce.New(debounce.Settings{After: 20 * time.Millisecond, Max: 5 * time.Millisecond})
	if due := w.Add(at(0)); !due.Equal(at(20 * time.Millisecond)) {
		t.Errorf("due at %v, want After, 20ms", due.Sub(t0))
	}
}

// With First set, a lone change waits First; a burst of changes closer
// than First/2 is one batch, First after its last; a burst further apart
// waits twice its longest gap, up to After.
func TestQuietTimeAdaptsToTheGaps(t *testing.T) {
	s := debounce.Settings{After: 20 * time.Millisecond, First: 5 * time.Millisecond, Max: time.Second}
	for _, tc := range []struct {
		name    string
		changes []time.Duration
		due     time.Duration
	}{
		{"a lone change", []time.Duration{0}, 5 * time.Millisecond},
		{"one save's writes", []time.Duration{0, 50 * time.Microsecond, 100 * time.Microsecond}, 5100 * time.Microsecond},
		{"ten files, 1ms apart", everyMs(10), 9*time.Millisecond + 5*time.Millisecond},
		{"a gap of 4ms", []time.Duration{0, 1 * time.Millisecond, 5 * time.Millisecond}, 13 * time.Millisecond},
		{"a gap of 15ms: After", []time.Duration{0, 15 * time.Millisecond}, 35 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := debounce.New(s)
			var due time.Time
			for _, c := range tc.changes {
				due = w.Add(at(c))
			}
			if got := due.Sub(t0); got != tc.due {
				t.Fatalf("due at %v, want %v", got, tc.due)
			}
			if _, ok := w.Take(due.Add(-time.Nanosecond)); ok {
				t.Fatal("taken before it was due")
			}
			b, ok := w.Take(due)
			if !ok || b.Events != len(tc.changes) {
				t.Fatalf("took %d events (%v), want all %d", b.Events, ok, len(tc.changes))
			}
			// The next batch starts afresh: a lone change waits First.
			if got := w.Add(at(time.Hour)).Sub(at(time.Hour)); got != s.First {
				t.Errorf("the next lone change waits %v, want %v", got, s.First)
			}
		})
	}
}

// A steady stream of changes 8ms apart, slower than First allows, costs
// one batch more than a fixed After: the first change is taken alone,
// and the rest, which began within After of that take, wait After.
func TestAStreamCutByTheShortWaitWaitsAfter(t *testing.T) {
	w := debounce.New(debounce.Settings{After: 20 * time.Millisecond, First: 5 * time.Millisecond, Max: time.Second})
	var batches []debounce.Batch
	for now := time.Duration(0); now <= 200*time.Millisecond; now += 500 * time.Microsecond {
		if now <= 80*time.Millisecond && now%(8*time.Millisecond) == 0 {
			w.Add(at(now))
		}
		if b, ok := w.Take(at(now)); ok {
			batches = append(batches, b)
		}
	}
	if len(batches) != 2 {
		t.Fatalf("%d batches, want 2: %+v", len(batches), batches)
	}
	if b := batches[0]; b.Events != 1 || b.Wait != 5*time.Millisecond {
		t.Errorf("first batch %d events that waited %v, want the first change alone after 5ms", b.Events, b.Wait)
	}
	// Changes at 8..80ms: taken 20ms after the last.
	if b := batches[1]; b.Events != 10 || !b.Last.Add(20*time.Millisecond).Equal(b.First.Add(b.Wait)) {
		t.Errorf("second batch %d events, taken %v after its last, want 10 taken 20ms after", b.Events, b.First.Add(b.Wait).Sub(b.Last))
	}
	// Long after, a lone change waits First again.
	if got := w.Add(at(time.Second)).Sub(at(time.Second)); got != 5*time.Millisecond {
		t.Errorf("a lone change a second later waits %v, want 5ms", got)
	}
}

// everyMs returns n changes 1ms apart, the first at 0.
func everyMs(n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * time.Millisecond
	}
	return out
}
