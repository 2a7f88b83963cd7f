// Package summary is the statistics the benchmark programs print.
package summary

import (
	"math"
	"slices"
)

// Stats returns the minimum, median and maximum of f over v; zeros for
// no values.
func Stats[T any](v []T, f func(T) float64) (lo, med, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	xs := make([]float64, len(v))
	for i, x := range v {
		xs[i] = f(x)
	}
	slices.Sort(xs)
	n := len(xs)
	med = xs[n/2]
	if n%2 == 0 {
		med = (xs[n/2-1] + xs[n/2]) / 2
	}
	return xs[0], med, xs[n-1]
}

// Quantile returns the q-quantile (0 <= q <= 1) of f over v by nearest
// rank: the smallest value at least a share q of the values are at or
// below; zero for no values.
func Quantile[T any](v []T, q float64, f func(T) float64) float64 {
	if len(v) == 0 {
		return 0
	}
	xs := make([]float64, len(v))
	for i, x := range v {
		xs[i] = f(x)
	}
	slices.Sort(xs)
	rank := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(rank, 0), len(xs)-1)]
}
