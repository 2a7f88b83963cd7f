// Package localtrust lets a workload trust a control plane that runs in
// the same process without any setup: the control plane registers its
// roots under its address, and the library looks them up when it dials
// that address. Trust between separate processes comes from roots held
// out of band (a file, or the identity source's bundle), never from here.
package localtrust

import (
	"crypto/x509"
	"maps"
	"slices"
	"sync"
)

var (
	mu    sync.Mutex
	next  uint64
	roots = map[string]map[uint64]func() []*x509.Certificate{}
)

// Register makes the certificates get returns trusted for connections to
// addr (host:port, as the control plane reports its address) from this
// process, until unregister is called.
func Register(addr string, get func() []*x509.Certificate) (unregister func()) {
	mu.Lock()
	defer mu.Unlock()
	next++
	id := next
	if roots[addr] == nil {
		roots[addr] = map[uint64]func() []*x509.Certificate{}
	}
	roots[addr][id] = get
	return func() {
		mu.Lock()
		defer mu.Unlock()
		delete(roots[addr], id)
		if len(roots[addr]) == 0 {
			delete(roots, addr)
		}
	}
}

// Roots returns the roots of the control planes registered at addr in this
// process now.
func Roots(addr string) []*x509.Certificate {
	mu.Lock()
	m := roots[addr]
	ids := slices.Sorted(maps.Keys(m))
	get := make([]func() []*x509.Certificate, 0, len(ids))
	for _, id := range ids {
		get = append(get, m[id])
	}
	mu.Unlock()
	var out []*x509.Certificate
	for _, g := range get {
		out = append(out, g()...)
	}
	return out
}
