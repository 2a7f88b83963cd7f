package controlplane

import (
	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// FieldError is one problem of a refused configuration: the file, the
// resource ("Kind namespace/name"), the field path and the reason, with
// what would fix it. Start's error, and a refused reload's, hold one for
// each problem found; errors.As finds the first, FieldErrors all.
type FieldError = config.FieldError

// FieldErrors returns every FieldError in err, in order.
func FieldErrors(err error) []*FieldError {
	var out []*FieldError
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		if fe, ok := e.(*FieldError); ok {
			out = append(out, fe)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, c := range u.Unwrap() {
				walk(c)
			}
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		}
	}
	walk(err)
	return out
}
