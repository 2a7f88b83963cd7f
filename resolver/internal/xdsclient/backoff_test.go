package xdsclient

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	base, max := 100*time.Millisecond, 5*time.Second
	for n, want := range []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000} {
		want *= time.Millisecond
		lo, hi := time.Duration(float64(want)*0.8), time.Duration(float64(want)*1.2)
		seen := map[time.Duration]bool{}
		for range 200 {
			d := backoff(base, max, n)
			if d < lo || d > hi {
				t.Fatalf("backoff(%d) = %v, want %v±20%%", n, d, want)
			}
			seen[d] = true
		}
		if len(seen) < 100 {
			t.Errorf("backoff(%d): only %d distinct delays in 200, want jitter", n, len(seen))
		}
	}
}

func TestSerializerOrder(t *testing.T) {
	s := newSerializer()
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.run()
	}()
	var got []int
	finished := make(chan struct{})
	for i := range 1000 {
		s.put(func() {
			got = append(got, i)
			if i == 999 {
				close(finished)
			}
		})
	}
	<-finished
	s.close()
	<-done
	for i, v := range got {
		if v != i {
			t.Fatalf("call %d ran as %d", v, i)
		}
	}
	s.put(func() { t.Error("called after close") })
}
