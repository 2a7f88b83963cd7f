package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/resolver"
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

// graceEnd returns when the registration grace of the xDS client's
// current connection ends, or the zero time when it is over (or the
// client is not connected: what it holds then is all it will know for a
// while).
func (m *Mesh) graceEnd(rc *resolver.Client, now time.Time) time.Time {
	if m.wait.RegistrationGrace <= 0 {
		return time.Time{}
	}
	c := rc.Connection()
	if !c.Up {
		return time.Time{}
	}
	grace := m.wait.RegistrationGrace
	if c.Again {
		// After a restart of the control plane, the servers reconnect
		// too, each after its own backoff, before they can register.
		grace += time.Duration(float64(cpBackoffMax) * (1 + cpBackoffJitter))
	}
	if end := c.Since.Add(grace); now.Before(end) {
		return end
	}
	return time.Time{}
}

// serviceHost reports whether name ("host:port" or a host) is a host that
// registrations make: <service>.<namespace>.svc.cluster.local.
func serviceHost(name string) (service, namespace string, ok bool) {
	host := name
	if h, _, err := net.SplitHostPort(name); err == nil {
		host = h
	}
	rest, ok := strings.CutSuffix(host, "."+wire.DomainSuffix)
	if !ok {
		return "", "", false
	}
	service, namespace, ok = strings.Cut(rest, ".")
	if !ok || service == "" || namespace == "" || strings.Contains(namespace, ".") {
		return "", "", false
	}
	return service, namespace, true
}

var errMeshClosed = errors.New("mesh: closed")

// hostError is the error for a host the control plane says does not
// exist.
type hostError struct {
	target string // as the caller wrote it
	name   string // the client Listener's name: the qualified host and port
	cp     string
}

func (e *hostError) Error() string {
	host := fmt.Sprintf("%q", e.name)
	if e.target != "" && e.target != e.name {
		host = fmt.Sprintf("%q (as %q)", e.name, e.target)
	}
	why := "no ServiceEntry names it"
	if svc, ns, ok := serviceHost(e.name); ok {
		_, port, _ := net.SplitHostPort(e.name)
		why = fmt.Sprintf("no server of service %s in namespace %s has registered port %s, and no ServiceEntry names the host", svc, ns, port)
	}
	return fmt.Sprintf("mesh: host %s is not in the mesh: the control plane at %s has no such host (%s)", host, e.cp, why)
}

func (e *hostError) Unwrap() error { return ErrUnknownHost }

// GRPCStatus makes the error Unavailable to gRPC callers: a server of the
// host may yet register.
func (e *hostError) GRPCStatus() *status.Status { return status.New(codes.Unavailable, e.Error()) }

// noAnswer is the error for a wait for the control plane that ended
// before it answered about what.
func (m *Mesh) noAnswer(rc *resolver.Client, what string, waited time.Duration, cause error) error {
	conn := ""
	if c := rc.Connection(); !c.Up && c.Err != nil {
		conn = fmt.Sprintf(" (the connection to it is down: %v)", c.Err)
	}
	return &waitError{msg: fmt.Sprintf("mesh: no answer from the control plane at %s about %s within %v%s", m.opts.controlPlane, what, waited.Round(time.Millisecond), conn), err: cause}
}

// waitError is a wait that ended: it wraps the context's error (or
// context.DeadlineExceeded when ConfigWait.Timeout ended it) and what was
// still missing, if known.
type waitError struct {
	msg string
	err error
	gap error
}

func (e *waitError) Error() string { return e.msg + ": " + e.err.Error() }

func (e *waitError) Unwrap() []error {
	if e.gap == nil {
		return []error{e.err}
	}
	return []error{e.err, e.gap}
}

// GRPCStatus maps the wait's end as gRPC-Go maps a context's.
func (e *waitError) GRPCStatus() *status.Status {
	code := codes.DeadlineExceeded
	if errors.Is(e.err, context.Canceled) {
		code = codes.Canceled
	}
	return status.New(code, e.Error())
}

// describeCluster names a cluster for a user: its name, and the subset,
// host and port it stands for.
func describeCluster(name string) string {
	port, subset, host, ok := wire.ParseClusterName(name)
	switch {
	case !ok:
		return "cluster " + name
	case subset == "":
		return fmt.Sprintf("cluster %s (%s:%s)", name, host, port)
	}
	return fmt.Sprintf("cluster %s (subset %q of %s:%s)", name, subset, host, port)
}

// sleepUntil waits for a change, the end of ctx, or until (zero: no
// limit). It reports ctx's error if ctx ended.
func sleepUntil(ctx context.Context, changed <-chan struct{}, until time.Time) error {
	var timer <-chan time.Time
	if !until.IsZero() {
		t := time.NewTimer(time.Until(until))
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-changed:
	case <-timer:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}
