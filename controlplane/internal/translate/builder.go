package translate

import (
	"maps"
	"slices"
	"sync"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// Builder is Build with a memory of its last build: a
// ClusterLoadAssignment whose inputs (its cluster name, its service
// port's endpoints and its subset's labels) are the same as at the last
// build is that build's value, the same pointer, not one built again. A
// file edit that moves one service's endpoints rebuilds that service's
// assignments only, and whoever serves the output can tell the others
// are unchanged without comparing them.
//
// The resources of an Output may be shared with later Outputs of the
// same Builder: they must not be modified. A Builder is safe for
// concurrent use; builds run one at a time.
type Builder struct {
	mu   sync.Mutex
	clas map[string]*claMemo // by cluster name, from the last build
}

// claMemo is one ClusterLoadAssignment and what it was built from. eps is
// a copy, labels included, so that a caller changing a map it handed in
// cannot make a stale assignment look current.
type claMemo struct {
	eps    []endpointInfo
	subset map[string]string
	cla    *endpointv3.ClusterLoadAssignment
	reused bool // taken from the build before
}

// NewBuilder returns a Builder with an empty memory.
func NewBuilder() *Builder { return &Builder{} }

// Build is Build(in), reusing what the last build made from the same
// inputs. Its output is what Build(in) returns, resource for resource.
func (b *Builder) Build(in Input) (*Output, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m := &claMemory{prev: b.clas, next: make(map[string]*claMemo, len(b.clas))}
	out, err := build(in, m)
	if err != nil {
		return nil, err // the memory of the last good build stays
	}
	b.clas = m.next
	return out, nil
}

// Reused returns how many ClusterLoadAssignments the last build took
// from the build before it.
func (b *Builder) Reused() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, c := range b.clas {
		if c.reused {
			n++
		}
	}
	return n
}

// claMemory is one build's use of a Builder's memory. A nil *claMemory
// builds every assignment.
type claMemory struct {
	prev, next map[string]*claMemo
}

// loadAssignment is buildLoadAssignment, or the assignment the last
// build made from equal inputs.
func (m *claMemory) loadAssignment(name string, eps []endpointInfo, subset map[string]string) *endpointv3.ClusterLoadAssignment {
	if m == nil {
		return buildLoadAssignment(name, eps, subset)
	}
	if len(subset) > 0 {
		// Only the endpoints the subset selects count: an edit of a v2
		// endpoint leaves the v1 subset's assignment as it was.
		var in []endpointInfo
		for _, e := range eps {
			if labelsMatch(subset, e.labels) {
				in = append(in, e)
			}
		}
		eps = in
	}
	if old := m.prev[name]; old != nil && maps.Equal(old.subset, subset) && slices.EqualFunc(old.eps, eps, sameEndpoint) {
		m.next[name] = &claMemo{eps: old.eps, subset: old.subset, cla: old.cla, reused: true}
		return old.cla
	}
	cla := buildLoadAssignment(name, eps, subset)
	kept := make([]endpointInfo, len(eps))
	for i, e := range eps {
		e.labels = maps.Clone(e.labels)
		kept[i] = e
	}
	m.next[name] = &claMemo{eps: kept, subset: maps.Clone(subset), cla: cla}
	return cla
}

// sameEndpoint reports whether two endpoints give the same
// LbEndpoint in every subset: what buildLoadAssignment reads of them.
func sameEndpoint(a, b endpointInfo) bool {
	return a.address == b.address && a.port == b.port && a.locality == b.locality && a.weight == b.weight &&
		maps.Equal(a.labels, b.labels)
}
