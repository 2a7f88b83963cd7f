// Package parallel runs the benchmark programs' work items a few at a
// time.
package parallel

import (
	"context"
	"sync"
)

// ForEach calls f(0..n-1), at most concurrency at a time, each as soon as
// a worker is free, until the first error or the end of ctx, and returns
// the first error (or ctx's).
func ForEach(ctx context.Context, n, concurrency int, f func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range max(1, min(concurrency, n)) {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
