package meshtest

import (
	"testing"
	"time"
)

// pollInterval is how often WaitUntil asks its condition again.
const pollInterval = 10 * time.Millisecond

// WaitUntil waits for something a test cannot be told about: it calls
// cond until it returns true, every 10ms, and fails the test with
// t.Fatalf ("meshtest: timed out after 5s waiting for <what>") if cond has
// not returned true by timeout. It returns as soon as cond holds, so a
// test waits no longer than it must; use it instead of a sleep.
//
// cond runs on the calling goroutine, which must be the test's, so it may
// call t.Fatal to end the wait early on a failure that waiting cannot cure.
// what names the awaited state in the failure message, as in "the new
// routes" or "both instances in EDS".
func WaitUntil(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for !cond() {
		if !time.Now().Before(deadline) {
			t.Fatalf("meshtest: timed out after %v waiting for %s", timeout, what)
		}
		<-tick.C
	}
}
