package registry_test

import (
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/meshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func inst(id string) registry.Instance {
	return registry.Instance{ID: id, Service: "greeter", Namespace: "default", Address: "127.0.0.1", Port: 1, ServicePort: 1}
}

func ids(is []registry.Instance) []string {
	var out []string
	for _, i := range is {
		out = append(out, i.ID)
	}
	return out
}

func TestStatesAndCleanRemoval(t *testing.T) {
	var changes atomic.Int32
	r := registry.New(time.Hour, func() { changes.Add(1) }, nil)
	defer r.Close()
	gen := mustUpsert(t, r, inst("a"), registry.NotServing)
	if got := r.Serving(); len(got) != 0 {
		t.Fatalf("a NOT_SERVING instance is serving: %v", ids(got))
	}
	r.SetState("a", gen, registry.Serving)
	if got := ids(r.Serving()); len(got) != 1 || got[0] != "a" {
		t.Fatalf("serving = %v, want [a]", got)
	}
	r.SetState("a", gen, registry.Draining)
	if got := r.Serving(); len(got) != 0 {
		t.Fatalf("a draining instance is serving: %v", ids(got))
	}
	r.Remove("a", gen)
	if got := r.Entries(); len(got) != 0 {
		t.Fatalf("entries after a clean removal: %v", got)
	}
	if got := changes.Load(); got != 4 {
		t.Errorf("onChange called %d times, want 4", got)
	}
}

const grace = 10 * time.Second

func TestLostInstanceIsRemovedAfterGrace(t *testing.T) {
	clock := meshtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	var changes atomic.Int32
	r := registry.New(grace, func() { changes.Add(1) }, clock.AfterFunc)
	defer r.Close()
	gen := mustUpsert(t, r, inst("a"), registry.Serving)
	r.Lost("a", gen)
	r.Lost("a", gen) // said twice: the grace runs from the first
	if got := clock.Pending(); !slices.Equal(got, []time.Duration{grace}) {
		t.Fatalf("grace timers %v, want one of %v", got, grace)
	}
	clock.Advance(grace - time.Nanosecond)
	if got := r.Entries(); len(got) != 1 || got[0].State != registry.Serving || !got[0].Lost {
		t.Fatalf("entries just before the grace period ends: %+v, want a serving and lost", got)
	}
	clock.Advance(time.Nanosecond)
	if got := r.Entries(); len(got) != 0 {
		t.Errorf("entries after the grace period: %+v", got)
	}
	if got := changes.Load(); got != 2 {
		t.Errorf("onChange called %d times, want 2: the registration and the removal", got)
	}
}

// Close stops the grace timers: nothing changes afterwards.
func TestCloseStopsTheGraceTimers(t *testing.T) {
	clock := meshtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := registry.New(grace, nil, clock.AfterFunc)
	r.Lost("a", mustUpsert(t, r, inst("a"), registry.Serving))
	r.Lost("b", mustUpsert(t, r, inst("b"), registry.Serving))
	r.Close()
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("grace timers %v after Close, want none", got)
	}
	r.Lost("c", mustUpsert(t, r, inst("c"), registry.Serving))
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("a grace timer %v started after Close", got)
	}
}

// A stale stream of an instance that already registered again must not
// remove or change the new registration.
func TestReRegistrationWinsOverTheStaleStream(t *testing.T) {
	clock := meshtest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	r := registry.New(grace, nil, clock.AfterFunc)
	defer r.Close()
	old := mustUpsert(t, r, inst("a"), registry.Serving)
	r.Lost("a", old)
	cur := mustUpsert(t, r, inst("a"), registry.Serving)
	if got := clock.Pending(); len(got) != 0 {
		t.Errorf("grace timers %v after the re-registration, want the old one stopped", got)
	}
	r.SetState("a", old, registry.Draining)
	r.Remove("a", old)
	r.Lost("a", old)
	clock.Advance(2 * grace) // past the old grace timer
	got := r.Entries()
	if len(got) != 1 || got[0].State != registry.Serving || got[0].Lost {
		t.Fatalf("entries = %+v, want a serving, not lost", got)
	}
	r.Remove("a", cur)
	if got := r.Entries(); len(got) != 0 {
		t.Fatalf("entries after removal: %v", got)
	}
}

func mustUpsert(t *testing.T, r *registry.Registry, inst registry.Instance, s registry.State) uint64 {
	t.Helper()
	gen, err := r.Upsert(inst, s, 0)
	if err != nil {
		t.Fatal(err)
	}
	return gen
}

// The address and per-identity checks follow registrations that were
// replaced and removed.
func TestUpsertChecksFollowRemovals(t *testing.T) {
	r := registry.New(time.Second, nil, nil)
	defer r.Close()
	a := inst("a")
	a.Identity = "spiffe://cluster.local/ns/default/sa/x"
	if _, err := r.Upsert(a, registry.Serving, 2); err != nil {
		t.Fatal(err)
	}
	b := inst("b")
	b.Identity = "spiffe://cluster.local/ns/default/sa/y"
	if _, err := r.Upsert(b, registry.Serving, 2); !errors.Is(err, registry.ErrAddressTaken) {
		t.Fatalf("another identity at a's address: %v, want ErrAddressTaken", err)
	}
	// a moves to another port: its old address is free.
	a.Port = 2
	genA, err := r.Upsert(a, registry.Serving, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Upsert(b, registry.Serving, 2); err != nil {
		t.Fatalf("b at a's former address: %v", err)
	}
	a2 := inst("a2")
	a2.Identity, a2.Port = a.Identity, 3
	if _, err := r.Upsert(a2, registry.Serving, 2); err != nil {
		t.Fatal(err)
	}
	a3 := inst("a3")
	a3.Identity, a3.Port = a.Identity, 4
	if _, err := r.Upsert(a3, registry.Serving, 2); !errors.Is(err, registry.ErrTooMany) {
		t.Fatalf("a third registration of a limit of 2: %v, want ErrTooMany", err)
	}
	r.Remove("a", genA)
	if _, err := r.Upsert(a3, registry.Serving, 2); err != nil {
		t.Fatalf("after a removal, within the limit again: %v", err)
	}
	b2 := inst("b2")
	b2.Identity, b2.Port = b.Identity, 2 // a's second address, now free
	if _, err := r.Upsert(b2, registry.Serving, 0); err != nil {
		t.Fatalf("at a removed registration's address: %v", err)
	}
}
