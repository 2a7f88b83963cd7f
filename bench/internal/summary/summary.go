// Package summary is the statistics the benchmark programs print.
package summary

import "slices"

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
