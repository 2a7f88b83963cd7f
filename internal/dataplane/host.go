package dataplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/meshlet/meshlet/resolver"
)

// Routes returns the host's routes for a call to target, waiting as Waits
// says: for the control plane's answer, and while the registration grace
// lasts, for a service host it does not have. A host that does not exist
// is a *HostError. untilCtx makes it wait for the host as long as ctx
// allows (gRPC's WaitForReady).
func (h *Host) Routes(ctx context.Context, target string, untilCtx bool) (*resolver.RouteConfig, error) {
	if st := h.state.Load(); st.Routes != nil {
		return st.Routes, nil // the common case, without a lock
	}
	c := h.core
	start := time.Now()
	limit := start.Add(c.cfg.Waits.Timeout)
	for {
		changed := c.Changes()
		st := h.state.Load()
		now := time.Now()
		var until time.Time // when to look again without a change
		var gap error       // what is missing, to say when the wait ends
		switch {
		case st.Routes != nil:
			return st.Routes, nil
		case st.Answered && !st.Exists && notFound(st.Err):
			gap = &HostError{Target: target, Name: h.name, CP: c.cfg.ControlPlane}
			if _, _, ok := ServiceHost(h.name); ok {
				until = c.GraceEnd(now)
			}
			if until.IsZero() && !untilCtx {
				return nil, gap
			}
		case st.Answered && st.Err != nil:
			gap = fmt.Errorf("mesh: host %q: %w", h.name, st.Err)
			if !untilCtx {
				return nil, gap
			}
		}
		if !untilCtx {
			if !now.Before(limit) {
				if gap != nil {
					return nil, gap
				}
				return nil, c.NoAnswer(fmt.Sprintf("host %q", h.name), now.Sub(start), context.DeadlineExceeded)
			}
			if until.IsZero() || until.After(limit) {
				until = limit
			}
		}
		if err := SleepUntil(ctx, changed, until); err != nil {
			if gap != nil {
				return nil, &WaitError{Msg: gap.Error(), Err: err, Gap: gap}
			}
			return nil, c.NoAnswer(fmt.Sprintf("host %q", h.name), time.Since(start), err)
		}
	}
}

// AwaitClusters waits, until the end of the registration grace, for
// every one of clusters to take requests. It returns what is still
// missing then, or nil.
func (c *Core) AwaitClusters(ctx context.Context, clusters []string) []error {
	for {
		changed := c.Changes()
		gaps := c.Gaps(clusters)
		if len(gaps) == 0 {
			return nil
		}
		end := c.GraceEnd(time.Now())
		if end.IsZero() || SleepUntil(ctx, changed, end) != nil {
			return gaps
		}
	}
}

// WaitRoutable waits as long as ctx allows until calls to host h can be
// routed: it has routes, and every cluster they send to has a healthy
// endpoint. The error says what is still missing.
func (h *Host) WaitRoutable(ctx context.Context, target string) error {
	c := h.core
	for {
		changed := c.Changes()
		st := h.state.Load()
		var gap error
		switch {
		case st.Routes != nil:
			gaps := c.Gaps(RouteClusters(*st.Routes))
			if len(gaps) == 0 {
				return nil
			}
			gap = JoinGaps(gaps)
		case st.Answered && !st.Exists && notFound(st.Err):
			gap = &HostError{Target: target, Name: h.name, CP: c.cfg.ControlPlane}
		case st.Answered && st.Err != nil:
			gap = fmt.Errorf("host %q: %w", h.name, st.Err)
		default:
			gap = fmt.Errorf("no answer from the control plane at %s about host %q yet", c.cfg.ControlPlane, h.name)
		}
		if err := SleepUntil(ctx, changed, time.Time{}); err != nil {
			msg := fmt.Sprintf("mesh: %s is not routable: %v", target, gap)
			var he *HostError
			if errors.As(gap, &he) {
				msg = gap.Error()
			}
			return &WaitError{Msg: msg, Err: err, Gap: gap}
		}
	}
}
