package mesh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/resolver"
)

// view is what meshlet's xDS client says of the targets this process
// calls: each host's Listener and routes, and each cluster the routes send
// to, with its endpoints. HTTP transports route by it; the gRPC
// interceptors and WaitRoutable read it. It follows a host from its first
// use until the mesh closes. Every change wakes every waiter: there are
// few, and they check cheaply.
type view struct {
	m  *Mesh
	rc *resolver.Client

	mu       sync.Mutex
	changed  chan struct{} // closed at the next change
	hosts    map[string]*hostView
	clusters map[string]*clusterView
	closed   bool
}

// hostView follows one client Listener (host:port) and its routes.
type hostView struct {
	name  string
	state atomic.Pointer[hostState] // read without the view's lock

	// Guarded by view.mu. A host that goes away keeps its routes watch,
	// its routes and its clusters: it usually comes back as it was, and a
	// name unsubscribed and asked again at once may go unanswered (the
	// control plane believes the client still holds it).
	answered    bool  // the Listener was answered for
	exists      bool  // and it exists
	lerr        error // the Listener's error, while it does not exist
	routes      *resolver.RouteConfig
	rerr        error // the routes' error, while there are none
	routeName   string
	clusters    []string
	cancel      func()
	cancelRoute func()
}

// hostState is a host as last known. It is never changed once published.
type hostState struct {
	// answered is set once the control plane has said whether the host
	// exists, or its config was rejected.
	answered bool
	exists   bool
	routes   *resolver.RouteConfig // nil until known
	err      error                 // why routes is nil, once answered
	// incomplete is set while a cluster the routes send to is not
	// answered yet, does not exist, or has no healthy endpoint.
	incomplete bool
}

// clusterView follows one cluster and its endpoints.
type clusterView struct {
	name      string
	hosts     map[*hostView]bool // whose routes send to it
	answered  bool
	exists    bool
	err       error
	edsName   string
	haveEPs   bool
	endpoints int
	healthy   int
	cancel    func()
	cancelEDS func()
}

func newView(m *Mesh, rc *resolver.Client) *view {
	return &view{m: m, rc: rc, changed: make(chan struct{}), hosts: map[string]*hostView{}, clusters: map[string]*clusterView{}}
}

// host returns the host name ("host:port"), following it from now on.
func (v *view) host(name string) *hostView {
	v.mu.Lock()
	defer v.mu.Unlock()
	if h := v.hosts[name]; h != nil {
		return h
	}
	h := &hostView{name: name}
	h.state.Store(&hostState{})
	v.hosts[name] = h
	if v.closed {
		h.answered, h.lerr = true, errMeshClosed
		v.publishLocked(h)
		return h
	}
	h.cancel = v.rc.WatchListener(name, func(l resolver.Listener, err error) { v.onListener(h, l, err) })
	return h
}

// changes returns a channel closed at the next change.
func (v *view) changes() <-chan struct{} {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.changed
}

func (v *view) fireLocked() {
	close(v.changed)
	v.changed = make(chan struct{})
}

func (v *view) onListener(h *hostView, l resolver.Listener, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	defer v.fireLocked()
	defer v.publishLocked(h)
	if err != nil {
		if errors.Is(err, resolver.ErrResourceNotFound) || !h.exists {
			h.answered, h.exists, h.lerr = true, false, err
		}
		return // a rejected update: what is in force stays
	}
	h.answered, h.exists, h.lerr = true, true, nil
	if l.Inline != nil {
		v.watchRoutesLocked(h, "")
		v.setRoutesLocked(h, *l.Inline)
		return
	}
	if l.RouteConfigName != h.routeName || h.cancelRoute == nil {
		// The routes in force stay until the new ones come.
		v.watchRoutesLocked(h, l.RouteConfigName)
	}
}

func (v *view) watchRoutesLocked(h *hostView, name string) {
	if h.cancelRoute != nil {
		h.cancelRoute()
		h.cancelRoute = nil
	}
	h.routeName = name
	if name == "" {
		return
	}
	h.cancelRoute = v.rc.WatchRouteConfig(name, func(rc resolver.RouteConfig, err error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.closed || h.routeName != name {
			return
		}
		defer v.fireLocked()
		if err != nil {
			if errors.Is(err, resolver.ErrResourceNotFound) || h.routes == nil {
				h.routes, h.rerr = nil, err
				v.setClustersLocked(h, nil)
			}
			v.publishLocked(h)
			return
		}
		v.setRoutesLocked(h, rc)
	})
}

func (v *view) setRoutesLocked(h *hostView, rc resolver.RouteConfig) {
	h.routes, h.rerr = &rc, nil
	v.setClustersLocked(h, routeClusters(rc))
	v.publishLocked(h)
}

// routeClusters returns every cluster the routes of rc send to.
func routeClusters(rc resolver.RouteConfig) []string {
	var out []string
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if r.NonForwarding {
				continue
			}
			out = append(out, actionClusters(r.Action)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func actionClusters(a resolver.RouteAction) []string {
	if a.Cluster != "" {
		return []string{a.Cluster}
	}
	out := make([]string, 0, len(a.WeightedClusters))
	for _, wc := range a.WeightedClusters {
		out = append(out, wc.Name)
	}
	return out
}

// setClustersLocked makes h follow names, and stops following the
// clusters no host uses any more.
func (v *view) setClustersLocked(h *hostView, names []string) {
	for _, n := range h.clusters {
		if slices.Contains(names, n) {
			continue
		}
		cv := v.clusters[n]
		delete(cv.hosts, h)
		if len(cv.hosts) == 0 {
			cv.stop()
			delete(v.clusters, n)
		}
	}
	for _, n := range names {
		cv := v.clusters[n]
		if cv == nil {
			cv = &clusterView{name: n, hosts: map[*hostView]bool{}}
			v.clusters[n] = cv
			cv.cancel = v.rc.WatchCluster(n, func(c resolver.Cluster, err error) { v.onCluster(cv, c, err) })
		}
		cv.hosts[h] = true
	}
	h.clusters = names
}

func (cv *clusterView) stop() {
	for _, c := range []func(){cv.cancel, cv.cancelEDS} {
		if c != nil {
			c()
		}
	}
	cv.cancel, cv.cancelEDS = nil, nil
}

func (v *view) onCluster(cv *clusterView, c resolver.Cluster, err error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed || v.clusters[cv.name] != cv {
		return
	}
	defer v.fireLocked()
	defer v.publishClusterLocked(cv)
	if err != nil {
		switch {
		case errors.Is(err, resolver.ErrResourceNotFound):
			cv.answered, cv.exists, cv.err = true, false, err
		case !cv.exists:
			cv.answered, cv.err = true, err
		}
		return
	}
	cv.answered, cv.exists, cv.err = true, true, nil
	if c.EDSServiceName == cv.edsName && cv.cancelEDS != nil {
		return
	}
	if cv.cancelEDS != nil {
		cv.cancelEDS()
	}
	eds := c.EDSServiceName
	cv.edsName, cv.haveEPs = eds, false
	cv.cancelEDS = v.rc.WatchEndpoints(eds, func(e resolver.Endpoints, err error) {
		v.mu.Lock()
		defer v.mu.Unlock()
		if v.closed || v.clusters[cv.name] != cv || cv.edsName != eds {
			return
		}
		switch {
		case errors.Is(err, resolver.ErrResourceNotFound):
			// Never sent: no endpoints.
			cv.haveEPs, cv.endpoints, cv.healthy = true, 0, 0
		case err != nil:
			return // rejected: the endpoints in force stay
		default:
			cv.haveEPs, cv.endpoints, cv.healthy = true, 0, 0
			for _, l := range e.Localities {
				for _, ep := range l.Endpoints {
					cv.endpoints++
					if ep.Healthy {
						cv.healthy++
					}
				}
			}
		}
		v.publishClusterLocked(cv)
		v.fireLocked()
	})
}

func (v *view) publishClusterLocked(cv *clusterView) {
	for h := range cv.hosts {
		v.publishLocked(h)
	}
}

func (v *view) publishLocked(h *hostView) {
	st := &hostState{answered: h.answered, exists: h.exists, err: h.lerr}
	if h.exists {
		st.routes, st.err = h.routes, nil
		if h.routes == nil {
			st.err = h.rerr
		}
	}
	if st.routes != nil {
		for _, n := range h.clusters {
			if v.clusterGapLocked(n) != nil {
				st.incomplete = true
				break
			}
		}
	}
	h.state.Store(st)
}

// clusterGapLocked says what keeps cluster name from taking requests, or
// nil if nothing does.
func (v *view) clusterGapLocked(name string) error {
	cv := v.clusters[name]
	switch {
	case cv == nil || !cv.answered:
		return &gapError{what: describeCluster(name), problem: "is not known yet (no answer from the control plane)"}
	case !cv.exists && cv.err != nil && !errors.Is(cv.err, resolver.ErrResourceNotFound):
		return &gapError{what: describeCluster(name), problem: "was rejected: " + cv.err.Error()}
	case !cv.exists:
		return &gapError{what: describeCluster(name), problem: "does not exist", err: resolver.ErrResourceNotFound}
	case !cv.haveEPs:
		return &gapError{what: describeCluster(name), problem: "has no endpoints known yet (no answer from the control plane)"}
	case cv.endpoints == 0:
		return &gapError{what: describeCluster(name), problem: "has no endpoints (no server of it is registered and serving)", err: balancer.ErrNoEndpoints}
	case cv.healthy == 0:
		return &gapError{what: describeCluster(name), problem: fmt.Sprintf("has %d endpoints, none healthy", cv.endpoints), err: balancer.ErrNoEndpoints}
	}
	return nil
}

// clusterGaps says what keeps each of clusters from taking requests.
func (v *view) clusterGaps(clusters []string) []error {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []error
	for _, n := range clusters {
		if err := v.clusterGapLocked(n); err != nil {
			out = append(out, err)
		}
	}
	return out
}

// gapError is one thing that keeps a target from taking requests.
type gapError struct {
	what, problem string
	err           error // a sentinel callers can test for, if any
}

func (e *gapError) Error() string { return e.what + " " + e.problem }
func (e *gapError) Unwrap() error { return e.err }

// joinGaps is the text of several gaps.
func joinGaps(gaps []error) string {
	s := make([]string, len(gaps))
	for i, g := range gaps {
		s[i] = g.Error()
	}
	return strings.Join(s, "; ")
}

// awaitRoutes returns the routes of host h for a call to target, waiting
// as ConfigWait says: for the control plane's answer, and while the
// registration grace lasts, for a service host it does not have. A host
// that does not exist is a *hostError. untilCtx makes it wait for the host
// as long as ctx allows (gRPC's WaitForReady).
func (v *view) awaitRoutes(ctx context.Context, h *hostView, target string, untilCtx bool) (resolver.RouteConfig, error) {
	if st := h.state.Load(); st.routes != nil {
		return *st.routes, nil // the common case, without a lock
	}
	start := time.Now()
	limit := start.Add(v.m.wait.Timeout)
	for {
		changed := v.changes()
		st := h.state.Load()
		now := time.Now()
		var until time.Time // when to look again without a change
		var gap error       // what is missing, to say when the wait ends
		switch {
		case st.routes != nil:
			return *st.routes, nil
		case st.answered && !st.exists && errors.Is(st.err, resolver.ErrResourceNotFound):
			gap = &hostError{target: target, name: h.name, cp: v.m.opts.controlPlane}
			if _, _, ok := serviceHost(h.name); ok {
				until = v.m.graceEnd(v.rc, now)
			}
			if until.IsZero() && !untilCtx {
				return resolver.RouteConfig{}, gap
			}
		case st.answered && st.err != nil:
			gap = fmt.Errorf("mesh: host %q: %w", h.name, st.err)
			if !untilCtx {
				return resolver.RouteConfig{}, gap
			}
		}
		if !untilCtx {
			if !now.Before(limit) {
				if gap != nil {
					return resolver.RouteConfig{}, gap
				}
				return resolver.RouteConfig{}, v.m.noAnswer(v.rc, fmt.Sprintf("host %q", h.name), now.Sub(start), context.DeadlineExceeded)
			}
			if until.IsZero() || until.After(limit) {
				until = limit
			}
		}
		if err := sleepUntil(ctx, changed, until); err != nil {
			if gap != nil {
				return resolver.RouteConfig{}, &waitError{msg: gap.Error(), err: err, gap: gap}
			}
			return resolver.RouteConfig{}, v.m.noAnswer(v.rc, fmt.Sprintf("host %q", h.name), time.Since(start), err)
		}
	}
}

// awaitClusters waits, until the end of the registration grace, for
// every one of clusters to take requests. It returns what is still
// missing then, or nil.
func (v *view) awaitClusters(ctx context.Context, clusters []string) []error {
	for {
		changed := v.changes()
		gaps := v.clusterGaps(clusters)
		if len(gaps) == 0 {
			return nil
		}
		end := v.m.graceEnd(v.rc, time.Now())
		if end.IsZero() || sleepUntil(ctx, changed, end) != nil {
			return gaps
		}
	}
}

func (v *view) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.closed {
		return
	}
	v.closed = true
	for _, h := range v.hosts {
		for _, c := range []func(){h.cancel, h.cancelRoute} {
			if c != nil {
				c()
			}
		}
	}
	for _, cv := range v.clusters {
		cv.stop()
	}
	v.fireLocked()
}
