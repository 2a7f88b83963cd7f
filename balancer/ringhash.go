package balancer

import (
	"cmp"
	"math"
	"math/bits"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// ring is a consistent-hash ring over the members of one level, healthy or
// not. Points are sorted by hash; owners[i] is the member index of
// hashes[i].
type ring struct {
	hashes []uint64
	owners []int32
}

// newRing builds the ring of members with the given weights (see
// RingHashConfig for the sizing).
func newRing(members []*member, weights []uint64, minSize, maxSize uint64) *ring {
	var total uint64
	for _, w := range weights {
		var carry uint64
		if total, carry = bits.Add64(total, w, 0); carry != 0 {
			total = math.MaxUint64
			break
		}
	}
	if total == 0 {
		return &ring{}
	}
	points := make([]uint64, len(weights))
	var size uint64
	if total <= maxSize {
		r := uint64(1)
		for r*total < minSize {
			r *= 2
		}
		for r > 1 && r*total > maxSize {
			r /= 2
		}
		for i, w := range weights {
			points[i] = w * r
		}
		size = r * total
	} else {
		scale := float64(maxSize) / float64(total)
		for i, w := range weights {
			points[i] = max(1, uint64(float64(w)*scale))
			size += points[i]
		}
	}

	type point struct {
		hash  uint64
		owner int32
	}
	pts := make([]point, 0, size)
	var buf []byte
	for i, m := range members {
		for k := range points[i] {
			buf = append(buf[:0], m.ep.Address...)
			buf = append(buf, '_')
			buf = strconv.AppendUint(buf, k, 10)
			pts = append(pts, point{xxhash.Sum64(buf), int32(i)})
		}
	}
	// Members are sorted by address, so ties break by address.
	slices.SortFunc(pts, func(a, b point) int {
		return cmp.Or(cmp.Compare(a.hash, b.hash), cmp.Compare(a.owner, b.owner))
	})
	r := &ring{hashes: make([]uint64, len(pts)), owners: make([]int32, len(pts))}
	for i, p := range pts {
		r.hashes[i], r.owners[i] = p.hash, p.owner
	}
	return r
}

// pick returns the first available member at or after h on the ring,
// walking past unavailable ones, or nil if none is available.
func (r *ring) pick(h uint64, members []*member, avail []bool) *member {
	n := len(r.hashes)
	i, _ := slices.BinarySearch(r.hashes, h)
	for range n {
		if i == n {
			i = 0
		}
		if o := r.owners[i]; avail[o] {
			return members[o]
		}
		i++
	}
	return nil
}
