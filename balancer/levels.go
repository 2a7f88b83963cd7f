package balancer

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"slices"
)

// staticLevel is one priority level (an EDS priority, split by locality
// distance when Config.Locality is set) as the last Update gave it:
// healthy or not, ejected or not.
type staticLevel struct {
	priority uint32
	rank     int
	members  []*member // sorted by address
	// localities groups members by locality when the level has locality
	// weights; nil otherwise.
	localities []staticLocality
	ring       *ring // RingHash only
	unhealthy  int
}

type staticLocality struct {
	weight  uint64
	members []int // indexes into staticLevel.members
}

// member is an endpoint as one Update gave it, bound to the state of its
// address.
type member struct {
	ep     Endpoint
	weight uint64 // Weight, 0 read as 1
	st     *endpointState
}

// snapshot is what Pick reads: immutable once stored.
type snapshot struct {
	levels     []*level // levels with an available member, in order
	nextRevive int64    // earliest end of an ejection; never if none
	err        error    // returned when nothing can be picked
}

// level is a staticLevel's available members, with the pickers over them.
type level struct {
	// RingHash.
	ring    *ring
	members []*member
	avail   []bool
	// Other policies: one group per locality with available members (one
	// group for the whole level without locality weights), chosen at
	// random by weight.
	groups []picker
	cum    []uint64 // cumulative locality weights
}

// picker is a policy over the available members of one group. pick is
// safe for concurrent use, does not block (atomics only, and PeakEWMA
// reads its estimates without a lock), is called only with a non-empty
// group and never returns nil.
type picker interface {
	pick(now int64) *member
}

func (l *level) pick(now int64, req *Request) *member {
	if l.ring != nil {
		h := req.Hash
		if !req.HasHash {
			h = rand.Uint64()
		}
		return l.ring.pick(h, l.members, l.avail)
	}
	g := l.groups[0]
	if len(l.groups) > 1 {
		x := rand.Uint64N(l.cum[len(l.cum)-1])
		i, _ := slices.BinarySearch(l.cum, x+1)
		g = l.groups[i]
	}
	return g.pick(now)
}

// rebuildLocked stores a new snapshot from the current levels and
// ejections.
func (b *Balancer) rebuildLocked() {
	s := &snapshot{nextRevive: never}
	ejected, unhealthy := 0, 0
	for _, st := range b.states {
		if st.ejected {
			ejected++
			s.nextRevive = min(s.nextRevive, st.until)
		}
	}
	for _, sl := range b.levels {
		unhealthy += sl.unhealthy
		if l := sl.available(b.s); l != nil {
			s.levels = append(s.levels, l)
		}
	}
	s.err = errNoEndpoints(b.total, unhealthy, ejected)
	b.snap.Store(s)
}

// available returns the level's available members and pickers over them,
// or nil if it has none.
func (sl *staticLevel) available(s *settings) *level {
	avail := make([]bool, len(sl.members))
	n := 0
	for i, m := range sl.members {
		if !m.ep.Unhealthy && !m.st.ejected {
			avail[i] = true
			n++
		}
	}
	if n == 0 {
		return nil
	}
	if sl.ring != nil {
		return &level{ring: sl.ring, members: sl.members, avail: avail}
	}
	l := &level{}
	if sl.localities == nil {
		eps := make([]*member, 0, n)
		for i, m := range sl.members {
			if avail[i] {
				eps = append(eps, m)
			}
		}
		l.groups = []picker{newPicker(s, eps)}
		return l
	}
	var sum uint64
	for _, loc := range sl.localities {
		var eps []*member
		for _, i := range loc.members {
			if avail[i] {
				eps = append(eps, sl.members[i])
			}
		}
		if len(eps) == 0 {
			continue
		}
		sum += loc.weight
		l.groups = append(l.groups, newPicker(s, eps))
		l.cum = append(l.cum, sum)
	}
	return l
}

// buildLevels checks an endpoint set and arranges it into levels, with
// their rings for RingHash. It does not touch the balancer's state.
func buildLevels(eps []Endpoint, s *settings) ([]*staticLevel, error) {
	type key struct {
		priority uint32
		rank     int
	}
	seen := make(map[string]bool, len(eps))
	// Locality weights of each priority: weighted[p] is the address of an
	// endpoint that has one, unweighted[p] of one that has none.
	weighted, unweighted := map[uint32]string{}, map[uint32]string{}
	locWeight := map[Locality]map[uint32]uint32{}
	byKey := map[key]*staticLevel{}
	for i := range eps {
		ep := eps[i]
		switch {
		case ep.Address == "":
			return nil, fmt.Errorf("balancer: endpoint %d (locality %q): no address", i, ep.Locality.String())
		case seen[ep.Address]:
			return nil, fmt.Errorf("balancer: endpoint %q appears twice (each address must be given once)", ep.Address)
		}
		seen[ep.Address] = true
		if ep.LocalityWeight > 0 {
			weighted[ep.Priority] = ep.Address
			if locWeight[ep.Locality] == nil {
				locWeight[ep.Locality] = map[uint32]uint32{}
			}
			if w, ok := locWeight[ep.Locality][ep.Priority]; ok && w != ep.LocalityWeight {
				return nil, fmt.Errorf("balancer: endpoint %q: locality %v has weight %d, but %d on another endpoint of priority %d", ep.Address, ep.Locality, ep.LocalityWeight, w, ep.Priority)
			}
			locWeight[ep.Locality][ep.Priority] = ep.LocalityWeight
		} else {
			unweighted[ep.Priority] = ep.Address
		}
		k := key{ep.Priority, 0}
		if s.local != nil {
			k.rank = distance(*s.local, ep.Locality)
		}
		l := byKey[k]
		if l == nil {
			l = &staticLevel{priority: k.priority, rank: k.rank}
			byKey[k] = l
		}
		w := uint64(ep.Weight)
		if w == 0 {
			w = 1
		}
		l.members = append(l.members, &member{ep: ep, weight: w})
		if ep.Unhealthy {
			l.unhealthy++
		}
	}
	for p, with := range weighted {
		if without, ok := unweighted[p]; ok {
			return nil, fmt.Errorf("balancer: priority %d: endpoint %q has a locality weight and endpoint %q has none (give every locality of a priority a weight, or none)", p, with, without)
		}
	}
	levels := make([]*staticLevel, 0, len(byKey))
	for _, l := range byKey {
		levels = append(levels, l)
	}
	slices.SortFunc(levels, func(a, b *staticLevel) int {
		return cmp.Or(cmp.Compare(a.priority, b.priority), cmp.Compare(a.rank, b.rank))
	})
	for _, l := range levels {
		slices.SortFunc(l.members, func(a, b *member) int { return cmp.Compare(a.ep.Address, b.ep.Address) })
		_, isWeighted := weighted[l.priority]
		if isWeighted {
			l.groupLocalities()
		}
		if s.policy == RingHash {
			weights := make([]uint64, len(l.members))
			for i, m := range l.members {
				weights[i] = m.weight
				if isWeighted {
					weights[i] *= uint64(m.ep.LocalityWeight)
				}
			}
			l.ring = newRing(l.members, weights, s.minRing, s.maxRing)
			l.localities = nil
		}
	}
	return levels, nil
}

// groupLocalities fills l.localities, in locality order.
func (l *staticLevel) groupLocalities() {
	idx := map[Locality]int{}
	var locs []Locality
	for _, m := range l.members {
		if _, ok := idx[m.ep.Locality]; !ok {
			idx[m.ep.Locality] = 0
			locs = append(locs, m.ep.Locality)
		}
	}
	slices.SortFunc(locs, func(a, b Locality) int {
		return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.SubZone, b.SubZone))
	})
	l.localities = make([]staticLocality, len(locs))
	for i, loc := range locs {
		idx[loc] = i
	}
	for i, m := range l.members {
		sl := &l.localities[idx[m.ep.Locality]]
		sl.weight = uint64(m.ep.LocalityWeight)
		sl.members = append(sl.members, i)
	}
}

// distance ranks ep's locality by its distance from local: 0 for the same
// sub-zone, 1 the same zone, 2 the same region, 3 elsewhere.
func distance(local, ep Locality) int {
	switch {
	case ep.Region != local.Region:
		return 3
	case ep.Zone != local.Zone:
		return 2
	case ep.SubZone != local.SubZone:
		return 1
	}
	return 0
}
