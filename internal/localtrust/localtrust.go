// Package localtrust holds what a workload and a control plane on the same
// host agree on without being told: a control plane in the same process
// registers its roots under its address, and the library looks them up
// when it dials that address; a control plane in another process keeps
// its root in a state directory whose default place both know. Trust
// between hosts comes from roots held out of band (a file, or the
// identity source's bundle), never from here.
package localtrust

import (
	"crypto/x509"
	"errors"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
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

// DefaultStateDir is where a control plane on this host keeps what must
// survive a restart (its CA root) unless told otherwise:
// $XDG_STATE_HOME/meshlet, or ~/.local/state/meshlet.
func DefaultStateDir() (string, error) {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "meshlet"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", errors.New("no home directory for the default state directory")
	}
	return filepath.Join(home, ".local", "state", "meshlet"), nil
}

// CARootPath is the control plane's CA root certificate in a state
// directory: the file workloads in other processes trust it with.
func CARootPath(stateDir string) string { return filepath.Join(stateDir, "ca", "root-cert.pem") }

// Loopback reports whether addr ("host:port") names this host: localhost
// or a loopback IP.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}
