// Package workload is what the memory benchmark's child services share:
// the conversation with the parent, the HTTP handler, and the load they
// put on themselves. It imports nothing of meshlet, so that the plain
// service's memory holds none of it.
package workload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Handler answers every request with 1 KiB, after reading its body.
var Handler http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if _, err := io.Copy(io.Discard, r.Body); err != nil {
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(payload)))
	w.Write(payload)
})

var payload = bytes.Repeat([]byte("x"), 1024)

// Get makes one GET of url with c and reads the whole answer.
func Get(ctx context.Context, c *http.Client, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	n, err := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK || n != int64(len(payload)):
		return fmt.Errorf("status %d, %d bytes", resp.StatusCode, n)
	}
	return nil
}

// Call is one call of one transport.
type Call func(ctx context.Context) error

// Fail reports err to the parent and exits.
func Fail(err error) {
	fmt.Println("error", err)
	os.Exit(1)
}

// WaitFirst calls until one call succeeds, for up to 60s: a mesh client
// waits for its config, its server for its registration.
func WaitFirst(ctx context.Context, name string, call Call) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		err := call(ctx)
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			Fail(fmt.Errorf("%s: no answer within 60s: %w", name, err))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Serve tells the parent "ready", then does what it asks, a line at a
// time on stdin, until stdin ends: "load <duration> <concurrency>" runs
// concurrency workers per call for duration, each making calls one after
// another, and answers "loaded <calls of each>"; at most maxCalls in all.
func Serve(calls ...Call) {
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		d, conc, err := parseLoad(in.Text())
		if err != nil {
			Fail(fmt.Errorf("parent said %q: %w", in.Text(), err))
		}
		counts, err := load(d, conc, calls)
		if err != nil {
			Fail(err)
		}
		fmt.Println("loaded", fmt.Sprint(counts))
	}
}

// parseLoad reads "load <duration> <concurrency>".
func parseLoad(line string) (time.Duration, int, error) {
	f := strings.Fields(line)
	if len(f) != 3 || f[0] != "load" {
		return 0, 0, errors.New("want load <duration> <concurrency>")
	}
	d, err := time.ParseDuration(f[1])
	if err != nil {
		return 0, 0, err
	}
	conc, err := strconv.Atoi(f[2])
	if err != nil || conc < 1 {
		return 0, 0, fmt.Errorf("concurrency %q", f[2])
	}
	return d, conc, nil
}

// maxCalls bounds one load, whatever its duration.
const maxCalls = 10_000_000

func load(d time.Duration, conc int, calls []Call) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d+10*time.Second)
	defer cancel()
	stop := time.Now().Add(d)
	counts := make([]atomic.Int64, len(calls))
	var (
		sent     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for i, call := range calls {
		for range conc {
			wg.Go(func() {
				for time.Now().Before(stop) && sent.Add(1) <= maxCalls {
					if err := call(ctx); err != nil {
						errOnce.Do(func() { firstErr = err })
						return
					}
					counts[i].Add(1)
				}
			})
		}
	}
	wg.Wait()
	out := make([]int64, len(calls))
	for i := range counts {
		out[i] = counts[i].Load()
	}
	return out, firstErr
}
