package mesh

import (
	"time"

	"github.com/meshlet/meshlet/internal/dataplane"
)

// The defaults of ConfigWait.
const (
	DefaultConfigWaitTimeout = 10 * time.Second
	DefaultRegistrationGrace = 2 * time.Second
)

// ConfigWait says how long a call waits for the mesh to know where it
// goes, rather than fail. Zero fields take the defaults.
//
// A call (an RPC on a ClientConn from Dial, or a request through the mesh
// HTTP client) is never failed, nor sent out of the mesh, because the
// control plane has not answered for its target yet: it waits for the
// control plane's answers about its host, routes, cluster and endpoints.
// A host the control plane says does not exist is not in the mesh
// (ErrUnknownHost) at once, with one exception. A service host
// (<service>.<namespace>.svc.cluster.local) exists only once a server of
// it has registered, so for RegistrationGrace after meshlet's xDS client
// connects to the control plane (at start, and again after it
// reconnects), such a host, and a cluster of one without endpoints, are
// taken as servers that have not registered yet and waited for until the
// grace ends. After a reconnection the grace is longer by the 2.4s the
// servers may take to reconnect themselves. Callers started together with their servers, or reconnected
// to a restarted control plane, then reach the servers instead of failing.
// Use Mesh.WaitRoutable to wait for a target longer.
type ConfigWait struct {
	// Timeout bounds a call's wait for the control plane's answers.
	// Default DefaultConfigWaitTimeout (10s). The call's context can end
	// the wait sooner.
	Timeout time.Duration
	// RegistrationGrace is how long, after the xDS client connects, a
	// service host or cluster without servers is waited for. Default
	// DefaultRegistrationGrace (2s); negative: not at all.
	RegistrationGrace time.Duration
}

// WithConfigWait sets how long calls wait for the mesh's config of their
// targets; see ConfigWait.
func WithConfigWait(w ConfigWait) Option {
	return optionFunc(func(o *options) { o.configWait = w })
}

func (w ConfigWait) withDefaults() ConfigWait {
	if w.Timeout <= 0 {
		w.Timeout = DefaultConfigWaitTimeout
	}
	if w.RegistrationGrace == 0 {
		w.RegistrationGrace = DefaultRegistrationGrace
	}
	return w
}

// waits is ConfigWait as the data plane takes it.
func (w ConfigWait) waits() dataplane.Waits {
	return dataplane.Waits{
		Timeout:           w.Timeout,
		RegistrationGrace: w.RegistrationGrace,
		// After a restart of the control plane, the servers reconnect
		// too, each after its own backoff, before they can register.
		ReconnectGrace: time.Duration(float64(cpBackoffMax) * (1 + cpBackoffJitter)),
	}
}

var errMeshClosed = dataplane.ErrClosed
