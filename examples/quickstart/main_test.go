package main

import (
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The README's first command must keep working: the quickstart shifts
// traffic and checks every split it observes.
func TestQuickstart(t *testing.T) {
	if err := run(2000, false); err != nil {
		t.Fatal(err)
	}
}
