package meshtest_test

import (
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshlet/meshlet/meshtest"
)

// exampleT stands in for a test's t in the runnable examples: Fatalf
// prints the message and ends the goroutine, as t.Fatalf does.
type exampleT struct{ testing.TB }

func (exampleT) Helper() {}

func (exampleT) Fatalf(format string, args ...any) {
	fmt.Printf(format+"\n", args...)
	runtime.Goexit()
}

// A test waits for what another goroutine does, for no longer than it
// takes.
func ExampleWaitUntil() {
	var t testing.TB = exampleT{} // in a test: the test's t
	var served atomic.Int32
	for range 3 {
		go served.Add(1) // requests served elsewhere
	}
	meshtest.WaitUntil(t, 5*time.Second, "three requests served", func() bool { return served.Load() == 3 })
	fmt.Println("served:", served.Load())
	// Output: served: 3
}

// A condition that never holds fails the test, naming what never came.
func ExampleWaitUntil_timeout() {
	var t testing.TB = exampleT{} // in a test: the test's t
	done := make(chan struct{})
	go func() { // the test's goroutine, which Fatalf ends
		defer close(done)
		meshtest.WaitUntil(t, 50*time.Millisecond, "the reply", func() bool { return false })
		fmt.Println("not reached")
	}()
	<-done
	// Output: meshtest: timed out after 50ms waiting for the reply
}
