package dataplane

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

// Waits says how long calls wait for the control plane rather than fail;
// package mesh's ConfigWait, with its defaults filled in.
type Waits struct {
	// Timeout bounds a call's wait for the control plane's answers.
	Timeout time.Duration
	// RegistrationGrace is how long, after the xDS client connects, a
	// service host or cluster without servers is waited for; zero or
	// negative: not at all.
	RegistrationGrace time.Duration
	// ReconnectGrace is added to RegistrationGrace after a reconnection:
	// the servers reconnect too, each after its own backoff.
	ReconnectGrace time.Duration
}

// ErrUnknownHost is wrapped by the error for a call to a host the control
// plane says does not exist.
var ErrUnknownHost = errors.New("mesh: host is not in the mesh")

// ErrClosed is the error of a call on a closed Core.
var ErrClosed = errors.New("mesh: closed")

// GraceEnd returns when the registration grace of the xDS client's
// current connection ends, or the zero time when it is over (or the
// client is not connected: what it holds then is all it will know for a
// while).
func (c *Core) GraceEnd(now time.Time) time.Time {
	w := c.cfg.Waits
	if w.RegistrationGrace <= 0 {
		return time.Time{}
	}
	conn := c.rc.Connection()
	if !conn.Up {
		return time.Time{}
	}
	grace := w.RegistrationGrace
	if conn.Again {
		grace += w.ReconnectGrace
	}
	if end := conn.Since.Add(grace); now.Before(end) {
		return end
	}
	return time.Time{}
}

// ServiceHost reports whether name ("host:port" or a host) is a host that
// registrations make: <service>.<namespace>.svc.cluster.local.
func ServiceHost(name string) (service, namespace string, ok bool) {
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

// HostError is the error for a host the control plane says does not
// exist.
type HostError struct {
	Target string // as the caller wrote it
	Name   string // the client Listener's name: the qualified host and port
	CP     string // the control plane's address
}

func (e *HostError) Error() string {
	host := fmt.Sprintf("%q", e.Name)
	if e.Target != "" && e.Target != e.Name {
		host = fmt.Sprintf("%q (as %q)", e.Name, e.Target)
	}
	why := "no ServiceEntry names it"
	if svc, ns, ok := ServiceHost(e.Name); ok {
		_, port, _ := net.SplitHostPort(e.Name)
		why = fmt.Sprintf("no server of service %s in namespace %s has registered port %s, and no ServiceEntry names the host", svc, ns, port)
	}
	return fmt.Sprintf("mesh: host %s is not in the mesh: the control plane at %s has no such host (%s)", host, e.CP, why)
}

func (e *HostError) Unwrap() error { return ErrUnknownHost }

// GRPCStatus makes the error Unavailable to gRPC callers: a server of the
// host may yet register.
func (e *HostError) GRPCStatus() *status.Status { return status.New(codes.Unavailable, e.Error()) }

// NoAnswer is the error for a wait for the control plane that ended
// before it answered about what.
func (c *Core) NoAnswer(what string, waited time.Duration, cause error) error {
	conn := ""
	if cn := c.rc.Connection(); !cn.Up && cn.Err != nil {
		conn = fmt.Sprintf(" (the connection to it is down: %v)", cn.Err)
	}
	return &WaitError{Msg: fmt.Sprintf("mesh: no answer from the control plane at %s about %s within %v%s", c.cfg.ControlPlane, what, waited.Round(time.Millisecond), conn), Err: cause}
}

// WaitError is a wait that ended: it wraps the context's error (or
// context.DeadlineExceeded when Waits.Timeout ended it) and what was
// still missing, if known.
type WaitError struct {
	Msg string
	Err error
	Gap error
}

func (e *WaitError) Error() string { return e.Msg + ": " + e.Err.Error() }

func (e *WaitError) Unwrap() []error {
	if e.Gap == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Gap}
}

// GRPCStatus maps the wait's end as gRPC-Go maps a context's.
func (e *WaitError) GRPCStatus() *status.Status {
	code := codes.DeadlineExceeded
	if errors.Is(e.Err, context.Canceled) {
		code = codes.Canceled
	}
	return status.New(code, e.Error())
}

// GapError is one thing that keeps a target from taking requests.
type GapError struct {
	What, Problem string
	Err           error // a sentinel callers can test for, if any
}

func (e *GapError) Error() string { return e.What + " " + e.Problem }
func (e *GapError) Unwrap() error { return e.Err }

// JoinGaps makes one error of several gaps, or returns the only one.
func JoinGaps(gaps []error) error {
	if len(gaps) == 1 {
		return gaps[0]
	}
	s := make([]string, len(gaps))
	for i, g := range gaps {
		s[i] = g.Error()
	}
	return &GapError{What: fmt.Sprintf("%d clusters", len(gaps)), Problem: "are not ready: " + strings.Join(s, "; ")}
}

// DescribeCluster names a cluster for a user: its name, and the subset,
// host and port it stands for.
func DescribeCluster(name string) string {
	port, subset, host, ok := wire.ParseClusterName(name)
	switch {
	case !ok:
		return "cluster " + name
	case subset == "":
		return fmt.Sprintf("cluster %s (%s:%s)", name, host, port)
	}
	return fmt.Sprintf("cluster %s (subset %q of %s:%s)", name, subset, host, port)
}

// SleepUntil waits for a change, the end of ctx, or until (zero: no
// limit). It reports ctx's error if ctx ended.
func SleepUntil(ctx context.Context, changed <-chan struct{}, until time.Time) error {
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

// notFound reports whether err says the resource does not exist.
func notFound(err error) bool { return errors.Is(err, resolver.ErrResourceNotFound) }
