package registry

import (
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"
)

// State is where an instance is in its lifecycle.
type State int

// The states of a registered instance. Only Serving instances are in EDS.
const (
	NotServing State = iota
	Serving
	Draining
)

func (s State) String() string {
	switch s {
	case Serving:
		return "SERVING"
	case Draining:
		return "DRAINING"
	default:
		return "NOT_SERVING"
	}
}

// Entry is a registered instance with its state, for status pages.
type Entry struct {
	Instance
	State State `json:"state"`
	// Lost is set while the instance's connection is gone and the grace
	// period runs.
	Lost bool `json:"lost,omitempty"`
}

type entry struct {
	Entry
	gen       uint64 // which registration stream owns the entry
	stopGrace func() bool
}

// AfterFunc is the clock of the grace timers: it calls f once d has
// passed, never from within the AfterFunc call, and stop cancels that,
// as time.AfterFunc and (*time.Timer).Stop do.
type AfterFunc func(d time.Duration, f func()) (stop func() bool)

// Registry holds registered instances in memory. It is safe for concurrent
// use. onChange is called, without locks held, after every change that
// alters the set of serving instances or their states.
type Registry struct {
	grace     time.Duration
	onChange  func()
	afterFunc AfterFunc

	mu      sync.Mutex
	gen     uint64
	entries map[string]*entry
	// Indexes of entries, so that a registration's checks do not scan
	// every other one (a fleet registering was quadratic).
	perIdentity map[string]int                 // registrations per identity
	byAddr      map[hostPort]map[string]string // instance ID -> identity, by address
	closed      bool
}

type hostPort struct {
	addr string
	port uint32
}

func (r *Registry) indexLocked(inst Instance) {
	r.perIdentity[inst.Identity]++
	k := hostPort{inst.Address, inst.Port}
	if r.byAddr[k] == nil {
		r.byAddr[k] = map[string]string{}
	}
	r.byAddr[k][inst.ID] = inst.Identity
}

func (r *Registry) unindexLocked(inst Instance) {
	if r.perIdentity[inst.Identity]--; r.perIdentity[inst.Identity] <= 0 {
		delete(r.perIdentity, inst.Identity)
	}
	k := hostPort{inst.Address, inst.Port}
	delete(r.byAddr[k], inst.ID)
	if len(r.byAddr[k]) == 0 {
		delete(r.byAddr, k)
	}
}

// New returns an empty registry. An instance whose connection dies stays
// registered for grace, so that a reconnect does not cause churn; the
// grace timers run on afterFunc (nil: the system clock's).
func New(grace time.Duration, onChange func(), afterFunc AfterFunc) *Registry {
	if onChange == nil {
		onChange = func() {}
	}
	if afterFunc == nil {
		afterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	return &Registry{grace: grace, onChange: onChange, afterFunc: afterFunc, entries: map[string]*entry{},
		perIdentity: map[string]int{}, byAddr: map[hostPort]map[string]string{}}
}

// ErrIDTaken is returned by Upsert when the instance ID belongs to
// another identity.
var ErrIDTaken = errors.New("the instance ID is registered by another identity")

// ErrAddressTaken is returned by Upsert when another identity has an
// instance at the same address and port.
var ErrAddressTaken = errors.New("the address is registered by another identity")

// ErrTooMany is returned by Upsert when the identity has as many
// registrations as the limit allows.
var ErrTooMany = errors.New("too many registrations for one identity")

// Upsert registers inst in state s, replacing any earlier registration with
// the same ID by the same identity. It returns a generation that later
// calls for this registration must pass, so that a stale stream cannot
// change a newer one. limit bounds the registrations of inst.Identity (0:
// no bound).
func (r *Registry) Upsert(inst Instance, s State, limit int) (uint64, error) {
	r.mu.Lock()
	old, replacing := r.entries[inst.ID]
	if replacing && old.Identity != inst.Identity {
		r.mu.Unlock()
		return 0, fmt.Errorf("%w (%s)", ErrIDTaken, old.Identity)
	}
	n := r.perIdentity[inst.Identity]
	for _, id := range sortedIDs(r.byAddr[hostPort{inst.Address, inst.Port}]) {
		if identity := r.byAddr[hostPort{inst.Address, inst.Port}][id]; id != inst.ID && identity != inst.Identity {
			r.mu.Unlock()
			return 0, fmt.Errorf("%w (%s)", ErrAddressTaken, identity)
		}
	}
	if limit > 0 && !replacing && n >= limit {
		r.mu.Unlock()
		return 0, fmt.Errorf("%w (%d)", ErrTooMany, limit)
	}
	r.gen++
	gen := r.gen
	if replacing {
		old.stop()
		r.unindexLocked(old.Instance)
	}
	r.entries[inst.ID] = &entry{Entry: Entry{Instance: inst, State: s}, gen: gen}
	r.indexLocked(inst)
	r.mu.Unlock()
	r.onChange()
	return gen, nil
}

// Owned returns the instances that identity registered, in any state.
func (r *Registry) Owned(identity string) []Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Instance
	for _, e := range r.entries {
		if e.Identity == identity {
			out = append(out, e.Instance)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// SetState changes the state of a registration.
func (r *Registry) SetState(id string, gen uint64, s State) {
	r.mu.Lock()
	e, ok := r.entries[id]
	changed := ok && e.gen == gen && e.State != s
	if changed {
		e.State = s
	}
	r.mu.Unlock()
	if changed {
		r.onChange()
	}
}

// Remove deregisters at once: the registration ended cleanly.
func (r *Registry) Remove(id string, gen uint64) {
	r.mu.Lock()
	e, ok := r.entries[id]
	removed := ok && e.gen == gen
	if removed {
		e.stop()
		delete(r.entries, id)
		r.unindexLocked(e.Instance)
	}
	r.mu.Unlock()
	if removed {
		r.onChange()
	}
}

// Lost records that the registration's connection died. The instance stays
// as it is for the grace period and is then removed, unless it registers
// again first.
func (r *Registry) Lost(id string, gen uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.entries[id]
	if !ok || e.gen != gen || r.closed || e.stopGrace != nil {
		return
	}
	e.Lost = true
	e.stopGrace = r.afterFunc(r.grace, func() { r.Remove(id, gen) })
}

// stop stops the entry's grace timer, if it has one.
func (e *entry) stop() {
	if e.stopGrace != nil {
		e.stopGrace()
		e.stopGrace = nil
	}
}

// Serving returns the instances that take traffic, sorted by ID.
func (r *Registry) Serving() []Instance {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Instance
	for _, e := range r.entries {
		if e.State == Serving {
			out = append(out, e.Instance)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Entries returns every registration, sorted by ID.
func (r *Registry) Entries() []Entry {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Entry, 0, len(r.entries))
	for _, e := range r.entries {
		out = append(out, e.Entry)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Close stops the grace timers. The registry must not be used afterwards.
func (r *Registry) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, e := range r.entries {
		e.stop()
	}
}

// sortedIDs returns the keys of m in order: which conflict is named does
// not depend on map order.
func sortedIDs(m map[string]string) []string {
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}
