package security

import (
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// Source is a workload's identity: its X.509 SVID, and the trust bundles
// that verify its peers. It is shaped like go-spiffe's sources, so a
// workloadapi.X509Source is one. Implementations are safe for concurrent
// use, and their methods return the current material without blocking:
// a rotated SVID is returned from the next call on.
type Source interface {
	x509svid.Source
	x509bundle.Source
}
