package policy

import (
	"sync"
	"testing"
)

func TestConnUsesLast(t *testing.T) {
	var u ConnUses
	for i := 1; i <= 4; i++ {
		if ok, last := u.Use(3); ok != (i <= 3) || last != (i == 3) {
			t.Fatalf("use %d of max 3: ok, last = %v, %v", i, ok, last)
		}
	}
	var none ConnUses
	for range 10 {
		if ok, last := none.Use(0); !ok || last {
			t.Fatal("max 0 reported a last use")
		}
	}
}

func TestConnUsesConcurrentOneLast(t *testing.T) {
	var u ConnUses
	var wg sync.WaitGroup
	var mu sync.Mutex
	lasts := 0
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, last := u.Use(80); last {
					mu.Lock()
					lasts++
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	if lasts != 1 {
		t.Fatalf("80 uses of max 80 from 8 goroutines: %d reported last, want 1", lasts)
	}
}

// BenchmarkConnUses is the per-request cost of counting a connection's
// requests, with and without maxRequestsPerConnection.
func BenchmarkConnUses(b *testing.B) {
	b.Run("unset", func(b *testing.B) {
		var u ConnUses
		b.ReportAllocs()
		for b.Loop() {
			u.Use(0)
		}
	})
	b.Run("set", func(b *testing.B) {
		var u ConnUses
		b.ReportAllocs()
		for b.Loop() {
			u.Use(1 << 31)
		}
	})
}
