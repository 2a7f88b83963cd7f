//go:build linux || darwin

package controlplane_test

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

const (
	testAfter = 20 * time.Millisecond
	testFirst = testAfter / 4 // a lone change's quiet time
	testMax   = time.Second
)

// startDebounced starts a control plane serving route.yaml at 80/20 whose
// config debounce runs on clock.
func startDebounced(t *testing.T, clock *meshtest.Clock) (*controlplane.Server, string) {
	t.Helper()
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
	cp := meshtest.StartControlPlane(t, dir, controlplane.WithClock(clock), controlplane.WithWarmup(time.Hour),
		controlplane.WithDebounce(controlplane.Debounce{After: testAfter, Max: testMax}))
	return cp, dir
}

// waitArmed waits until the debounce timer is set to fire in d: the
// watcher has taken in the last change, made when the clock read what it
// reads now.
func waitArmed(t *testing.T, clock *meshtest.Clock, d time.Duration) {
	t.Helper()
	meshtest.WaitUntil(t, 5*time.Second, "the debounce timer at "+d.String(), func() bool {
		return slices.Contains(clock.Pending(), d)
	})
}

// One change is applied once After/4 has passed since it, and not before.
func TestDebounceAppliesOneChangeAfterTheQuietTime(t *testing.T) {
	clock := meshtest.NewClock(time.Now())
	cp, dir := startDebounced(t, clock)
	meshtest.WriteFile(t, dir, "route.yaml", routeWithWeights("50", "50"))
	waitArmed(t, clock, testFirst)

	// Only a timer firing reloads, and the clock moves only here.
	clock.Advance(testFirst - time.Millisecond)
	if got := servedWeights(t, cp); !slices.Equal(got, []int{80, 20}) {
		t.Fatalf("served weights %v 1ms before the debounce ends, want the old [80 20]", got)
	}
	clock.Advance(time.Millisecond)
	meshtest.WaitUntil(t, 5*time.Second, "the change, once the debounce ended", func() bool {
		return slices.Equal(servedWeights(t, cp), []int{50, 50})
	})
	// The reload is counted just after its config is served.
	m := scrapeOnce(t, cp, "meshlet_controlplane_config_debounce_seconds_count")
	if got := m["meshlet_controlplane_config_debounce_seconds_count"]; got != 1 {
		t.Errorf("config_debounce_seconds_count %v, want 1", got)
	}
	if got := m["meshlet_controlplane_config_debounce_seconds_sum"]; got != testFirst.Seconds() {
		t.Errorf("config_debounce_seconds_sum %v, want %v", got, testFirst.Seconds())
	}
}

// A change every 2ms for 100ms (closer than After/8) is one reload,
// After/4 after the last change, within Max of the first, serving the
// last write.
func TestDebounceCoalescesABurst(t *testing.T) {
	clock := meshtest.NewClock(time.Now())
	cp, dir := startDebounced(t, clock)
	const step, burst = 2 * time.Millisecond, 100 * time.Millisecond
	writes := 0
	for at := time.Duration(0); ; at += step {
		w := 10 + writes%80
		meshtest.WriteFile(t, dir, "route.yaml", routeWithWeights(strconv.Itoa(w), strconv.Itoa(100-w)))
		writes++
		waitArmed(t, clock, testFirst)
		if at == burst {
			break
		}
		clock.Advance(step)
	}
	if got := servedWeights(t, cp); !slices.Equal(got, []int{80, 20}) {
		t.Fatalf("served weights %v during the burst, want the old [80 20]: a reload happened", got)
	}
	clock.Advance(testFirst)
	last := 10 + (writes-1)%80
	meshtest.WaitUntil(t, 5*time.Second, "the last write of the burst", func() bool {
		return slices.Equal(servedWeights(t, cp), []int{last, 100 - last})
	})
	m := scrapeOnce(t, cp, `meshlet_controlplane_config_reloads_total{result="ok"}`)
	if got := m[`meshlet_controlplane_config_reloads_total{result="ok"}`]; got != 1 {
		t.Errorf("%v reloads, want 1", got)
	}
	if got := m["meshlet_controlplane_config_debounce_seconds_sum"]; got != (burst + testFirst).Seconds() {
		t.Errorf("the reload waited %vs after the first change, want %v", got, (burst + testFirst).Seconds())
	}
	if got := m["meshlet_controlplane_config_events_coalesced_sum"]; got < float64(writes) {
		t.Errorf("%v events coalesced, want at least the %d writes", got, writes)
	}
}

// scrapeOnce scrapes the control plane's metrics once series has counted
// something: a reload is counted just after its config is served.
func scrapeOnce(t *testing.T, cp *controlplane.Server, series string) map[string]float64 {
	t.Helper()
	var m map[string]float64
	meshtest.WaitUntil(t, 5*time.Second, series+" to count the reload", func() bool {
		m = scrape(t, cp)
		return m[series] >= 1
	})
	return m
}
