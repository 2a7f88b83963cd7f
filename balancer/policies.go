package balancer

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"sync/atomic"
)

func newPicker(s *settings, eps []*member) picker {
	switch s.policy {
	case WeightedRoundRobin:
		return newRoundRobin(eps, schedule(eps))
	case LeastRequest:
		return &leastRequest{newTwoChoices(eps)}
	case Random:
		return random(eps)
	case PeakEWMA:
		return &peakEWMA{twoChoices: newTwoChoices(eps), tau: s.tau}
	}
	return newRoundRobin(eps, nil)
}

// roundRobin walks eps, or eps in the order of a weighted schedule, from a
// random start.
type roundRobin struct {
	eps   []*member
	order []int32 // nil: eps in turn
	next  atomic.Uint64
}

func newRoundRobin(eps []*member, order []int32) *roundRobin {
	p := &roundRobin{eps: eps, order: order}
	n := len(eps)
	if order != nil {
		n = len(order)
	}
	p.next.Store(rand.Uint64N(uint64(n)))
	return p
}

func (p *roundRobin) pick(int64) *member {
	n := p.next.Add(1) - 1
	if p.order == nil {
		return p.eps[n%uint64(len(p.eps))]
	}
	return p.eps[p.order[n%uint64(len(p.order))]]
}

// maxSchedule bounds the length of a weighted round-robin cycle. Weights
// whose sum (after dividing by their greatest common divisor) exceeds it
// are scaled down, and the shares become approximate.
const maxSchedule = 1 << 16

// schedule is one cycle of weighted round robin over eps: member i appears
// weight(i) times, its k-th turn at deadline (k+1)/weight(i), in deadline
// order (earliest deadline first), ties by position. It returns nil when
// all weights are equal.
func schedule(eps []*member) []int32 {
	w := make([]uint64, len(eps))
	var g, sum uint64
	for i, m := range eps {
		w[i] = m.weight
		g = gcd(g, m.weight)
	}
	for i := range w {
		w[i] /= g
		sum += w[i]
	}
	if sum == uint64(len(eps)) {
		return nil
	}
	if sum > maxSchedule {
		total := sum
		sum = 0
		for i := range w {
			w[i] = max(1, w[i]*maxSchedule/total)
			sum += w[i]
		}
	}
	type turn struct {
		i    int32
		k, w uint64
	}
	turns := make([]turn, 0, sum)
	for i, wi := range w {
		for k := range wi {
			turns = append(turns, turn{int32(i), k + 1, wi})
		}
	}
	// (a.k / a.w) vs (b.k / b.w), exactly.
	slices.SortFunc(turns, func(a, b turn) int {
		return cmp.Or(cmp.Compare(a.k*b.w, b.k*a.w), cmp.Compare(a.i, b.i))
	})
	order := make([]int32, len(turns))
	for i, t := range turns {
		order[i] = t.i
	}
	return order
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// random picks uniformly.
type random []*member

func (p random) pick(int64) *member {
	return p[rand.IntN(len(p))]
}

// twoChoices draws the two candidates of the power of two choices: two
// distinct members uniformly when all weights are equal, and otherwise two
// members with probability proportional to weight (with replacement), so
// that when the comparison ties the first one, and so weight, decides.
type twoChoices struct {
	eps []*member
	cum []uint64 // cumulative weights; nil when all are equal
}

func newTwoChoices(eps []*member) twoChoices {
	p := twoChoices{eps: eps}
	var sum uint64
	cum := make([]uint64, len(eps))
	for i, m := range eps {
		sum += m.weight
		cum[i] = sum
		if m.weight != eps[0].weight {
			p.cum = cum
		}
	}
	return p
}

func (p *twoChoices) draw() (*member, *member) {
	if p.cum != nil {
		return p.weighted(), p.weighted()
	}
	i := rand.IntN(len(p.eps))
	j := rand.IntN(len(p.eps) - 1)
	if j >= i {
		j++
	}
	return p.eps[i], p.eps[j]
}

func (p *twoChoices) weighted() *member {
	x := rand.Uint64N(p.cum[len(p.cum)-1])
	i, _ := slices.BinarySearch(p.cum, x+1)
	return p.eps[i]
}

// leastRequest is the power of two choices by outstanding/weight; a tie
// goes to the first draw.
type leastRequest struct{ twoChoices }

func (p *leastRequest) pick(int64) *member {
	if len(p.eps) == 1 {
		return p.eps[0]
	}
	a, b := p.draw()
	oa := uint64(max(a.st.outstanding.Load(), 0))
	ob := uint64(max(b.st.outstanding.Load(), 0))
	if ob*a.weight < oa*b.weight {
		return b
	}
	return a
}

// peakEWMA is the power of two choices by rtt×(1+outstanding/weight); a
// tie goes to the first draw.
type peakEWMA struct {
	twoChoices
	tau float64
}

func (p *peakEWMA) pick(now int64) *member {
	if len(p.eps) == 1 {
		return p.eps[0]
	}
	a, b := p.draw()
	if p.cost(b, now) < p.cost(a, now) {
		return b
	}
	return a
}

func (p *peakEWMA) cost(m *member, now int64) float64 {
	o := float64(max(m.st.outstanding.Load(), 0))
	return m.st.rttAt(now, p.tau) * (1 + o/float64(m.weight))
}
