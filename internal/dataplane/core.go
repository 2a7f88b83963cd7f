package dataplane

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/resolver"
)

// Config is what a Core needs from the mesh that assembles it.
type Config struct {
	// Client is the process's one xDS client.
	Client *resolver.Client
	// Locality is this workload's, for locality-aware balancing.
	Locality balancer.Locality
	// Waits bounds how long calls wait for the control plane.
	Waits Waits
	// ControlPlane is the control plane's address, for messages.
	ControlPlane string
	Log          *slog.Logger
}

// Core follows the hosts this process calls, their routes and the
// clusters those send to, with their endpoints and balancers. It follows
// a host from its first use until Close. Every change wakes every waiter:
// there are few, and they check cheaply.
type Core struct {
	cfg Config
	rc  *resolver.Client

	mu       sync.Mutex
	changed  chan struct{} // closed at the next change
	hosts    map[string]*Host
	clusters map[string]*Cluster
	closed   bool
}

// New returns a Core on cfg.Client. Close it before the client.
func New(cfg Config) *Core {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	return &Core{cfg: cfg, rc: cfg.Client, changed: make(chan struct{}), hosts: map[string]*Host{}, clusters: map[string]*Cluster{}}
}

// Changes returns a channel closed at the next change of anything the
// Core follows.
func (c *Core) Changes() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.changed
}

func (c *Core) fireLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Host follows one client Listener (host:port) and its routes.
type Host struct {
	core  *Core
	name  string
	state atomic.Pointer[HostState] // read without the core's lock

	// Guarded by core.mu. A host that goes away keeps its routes watch,
	// its routes and its clusters: it usually comes back as it was, and a
	// name unsubscribed and asked again at once may go unanswered (the
	// control plane believes the client still holds it).
	answered    bool  // the Listener was answered for
	exists      bool  // and it exists
	lerr        error // the Listener's error, while it does not exist
	routes      *resolver.RouteConfig
	rerr        error // the routes' error, while there are none
	routeName   string
	clusters    []*Cluster
	cancel      func()
	cancelRoute func()
}

// HostState is a host as last known. It is never changed once published.
type HostState struct {
	// Answered is set once the control plane has said whether the host
	// exists, or its config was rejected.
	Answered bool
	Exists   bool
	Routes   *resolver.RouteConfig // nil until known
	Err      error                 // why Routes is nil, once answered
	// Clusters are those the routes send to.
	Clusters []*Cluster
	// Incomplete is set while a cluster the routes send to is not
	// answered yet, does not exist, or has no healthy endpoint.
	Incomplete bool
}

// Core returns the Core that follows the host.
func (h *Host) Core() *Core { return h.core }

// Routes reports whether the host's routes, as last known, send to cl.
func (st *HostState) RoutesTo(cl *Cluster) bool {
	for _, c := range st.Clusters {
		if c == cl {
			return true
		}
	}
	return false
}

// Name returns the host's Listener name.
func (h *Host) Name() string { return h.name }

// State returns the host as last known.
func (h *Host) State() *HostState { return h.state.Load() }

// Host returns the host name ("host:port"), following it from now on.
func (c *Core) Host(name string) *Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h := c.hosts[name]; h != nil {
		return h
	}
	h := &Host{core: c, name: name}
	h.state.Store(&HostState{})
	c.hosts[name] = h
	if c.closed {
		h.answered, h.lerr = true, ErrClosed
		c.publishLocked(h)
		return h
	}
	h.cancel = c.rc.WatchListener(name, func(l resolver.Listener, err error) { c.onListener(h, l, err) })
	return h
}

func (c *Core) onListener(h *Host, l resolver.Listener, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	defer c.fireLocked()
	defer c.publishLocked(h)
	if err != nil {
		if notFound(err) || !h.exists {
			h.answered, h.exists, h.lerr = true, false, err
		}
		return // a rejected update: what is in force stays
	}
	h.answered, h.exists, h.lerr = true, true, nil
	if l.Inline != nil {
		c.watchRoutesLocked(h, "")
		c.setRoutesLocked(h, *l.Inline)
		return
	}
	if l.RouteConfigName != h.routeName || h.cancelRoute == nil {
		// The routes in force stay until the new ones come.
		c.watchRoutesLocked(h, l.RouteConfigName)
	}
}

func (c *Core) watchRoutesLocked(h *Host, name string) {
	if h.cancelRoute != nil {
		h.cancelRoute()
		h.cancelRoute = nil
	}
	h.routeName = name
	if name == "" {
		return
	}
	h.cancelRoute = c.rc.WatchRouteConfig(name, func(rc resolver.RouteConfig, err error) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || h.routeName != name {
			return
		}
		defer c.fireLocked()
		if err != nil {
			if notFound(err) || h.routes == nil {
				h.routes, h.rerr = nil, err
				c.setClustersLocked(h, nil)
			}
			c.publishLocked(h)
			return
		}
		c.setRoutesLocked(h, rc)
	})
}

func (c *Core) setRoutesLocked(h *Host, rc resolver.RouteConfig) {
	h.routes, h.rerr = &rc, nil
	c.setClustersLocked(h, RouteClusters(rc))
	c.publishLocked(h)
}

// RouteClusters returns every cluster the routes of rc send to.
func RouteClusters(rc resolver.RouteConfig) []string {
	var out []string
	for _, vh := range rc.VirtualHosts {
		for _, r := range vh.Routes {
			if r.NonForwarding {
				continue
			}
			out = append(out, ActionClusters(r.Action)...)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// ActionClusters returns the clusters a route action sends to.
func ActionClusters(a resolver.RouteAction) []string {
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
func (c *Core) setClustersLocked(h *Host, names []string) {
	var next []*Cluster
	for _, n := range names {
		cl := c.clusterLocked(n)
		cl.hosts[h] = true
		next = append(next, cl)
	}
	for _, cl := range h.clusters {
		if slices.Contains(next, cl) {
			continue
		}
		delete(cl.hosts, h)
		if len(cl.hosts) == 0 {
			cl.stopLocked()
			delete(c.clusters, cl.name)
		}
	}
	h.clusters = next
}

// Cluster returns the cluster name, following it while a host's routes
// send to it. A call that picked a cluster from routes just replaced
// gets one followed until the next change of routes.
func (c *Core) Cluster(name string) *Cluster {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.clusterLocked(name)
}

func (c *Core) clusterLocked(name string) *Cluster {
	if cl := c.clusters[name]; cl != nil {
		return cl
	}
	cl := &Cluster{core: c, name: name, hosts: map[*Host]bool{}}
	cl.state.Store(&clusterState{tlsKey: TLSKey(nil)})
	c.clusters[name] = cl
	if c.closed {
		cl.answered, cl.err = true, ErrClosed
		return cl
	}
	cl.cancel = c.rc.WatchCluster(name, func(rc resolver.Cluster, err error) { c.onCluster(cl, rc, err) })
	return cl
}

func (c *Core) publishLocked(h *Host) {
	st := &HostState{Answered: h.answered, Exists: h.exists, Err: h.lerr}
	if h.exists {
		st.Routes, st.Err = h.routes, nil
		if h.routes == nil {
			st.Err = h.rerr
		}
	}
	if st.Routes != nil {
		st.Clusters = h.clusters
		for _, cl := range h.clusters {
			if cl.gapLocked() != nil {
				st.Incomplete = true
				break
			}
		}
	}
	h.state.Store(st)
}

// Gaps says what keeps each of clusters from taking requests.
func (c *Core) Gaps(clusters []string) []error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []error
	for _, n := range clusters {
		cl := c.clusters[n]
		if cl == nil {
			out = append(out, &GapError{What: DescribeCluster(n), Problem: "is not known yet (no answer from the control plane)"})
			continue
		}
		if err := cl.gapLocked(); err != nil {
			out = append(out, err)
		}
	}
	return out
}

// Close stops following everything.
func (c *Core) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	c.closed = true
	for _, h := range c.hosts {
		for _, f := range []func(){h.cancel, h.cancelRoute} {
			if f != nil {
				f()
			}
		}
	}
	for _, cl := range c.clusters {
		cl.stopLocked()
	}
	c.fireLocked()
}
