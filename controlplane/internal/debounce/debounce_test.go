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
