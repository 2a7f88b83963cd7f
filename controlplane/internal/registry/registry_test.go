package registry_test

import (
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshlet/meshlet/controlplane/internal/registry"
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
	r := registry.New(time.Hour, func() { changes.Add(1) })
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

func TestLostInstanceIsRemovedAfterGrace(t *testing.T) {
	removed := make(chan struct{}, 10)
	r := registry.New(100*time.Millisecond, func() { removed <- struct{}{} })
	defer r.Close()
	gen := mustUpsert(t, r, inst("a"), registry.Serving)
	<-removed
	lost := time.Now()
	r.Lost("a", gen)
	if got := r.Serving(); len(got) != 1 {
		t.Fatalf("a lost instance left before its grace period: %v", ids(got))
	}
	select {
	case <-removed:
	case <-time.After(5 * time.Second):
		t.Fatal("a lost instance was not removed after its grace period")
	}
	if took := time.Since(lost); took < 100*time.Millisecond {
		t.Errorf("removed after %v, before the 100ms grace period", took)
	}
	if got := r.Entries(); len(got) != 0 {
		t.Errorf("entries after the grace period: %v", got)
	}
}

// A stale stream of an instance that already registered again must not
// remove or change the new registration.
func TestReRegistrationWinsOverTheStaleStream(t *testing.T) {
	r := registry.New(50*time.Millisecond, nil)
	defer r.Close()
	old := mustUpsert(t, r, inst("a"), registry.Serving)
	r.Lost("a", old)
	cur := mustUpsert(t, r, inst("a"), registry.Serving)
	r.SetState("a", old, registry.Draining)
	r.Remove("a", old)
	time.Sleep(150 * time.Millisecond) // past the old grace timer
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
