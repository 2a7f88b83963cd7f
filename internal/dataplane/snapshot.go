package dataplane

import (
	"slices"
	"strings"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/policy"
)

// The snapshots below are plain values, with JSON tags, of what the data
// plane holds: for the admin handler and for metrics. Taking one locks
// the core briefly and each balancer and breaker once; nothing on the
// request path waits for it for long.

// ClusterSnapshot is one cluster the process calls.
type ClusterSnapshot struct {
	Name string `json:"name"`
	// Problem is what keeps the cluster from taking requests (it does
	// not exist, has no healthy endpoint...), empty when nothing does.
	Problem string `json:"problem,omitempty"`
	// Hosts are the client Listeners ("host:port") whose routes send to
	// it.
	Hosts []string `json:"hosts"`
	// LBPolicy is the balancer's policy; EDSName the endpoints' resource.
	LBPolicy  string             `json:"lbPolicy,omitempty"`
	EDSName   string             `json:"edsName,omitempty"`
	Endpoints []EndpointSnapshot `json:"endpoints"`
	// Ejections counts the ejections by outlier detection, cumulative
	// while the cluster's balancer stays (a change of its policy or
	// outlier settings makes a new one).
	Ejections uint64 `json:"ejections"`
	// Breaker is the cluster's circuit breaker (meshlet's annotation);
	// nil without one.
	Breaker *BreakerSnapshot `json:"breaker,omitempty"`
	// Limits are its connection-pool limits and what is in flight.
	Limits LimitsSnapshot `json:"limits"`
}

// EndpointSnapshot is one endpoint of a cluster.
type EndpointSnapshot struct {
	Address  string `json:"address"`
	Locality string `json:"locality,omitempty"`
	Priority uint32 `json:"priority"`
	Weight   uint32 `json:"weight"`
	// Healthy is the control plane's view; Ejected that of outlier
	// detection, until EjectedUntil, by the detector EjectReason.
	Healthy      bool      `json:"healthy"`
	Ejected      bool      `json:"ejected"`
	EjectedUntil time.Time `json:"ejectedUntil,omitzero"`
	EjectReason  string    `json:"ejectReason,omitempty"`
	// Ejections is the ejection-time multiplier.
	Ejections int `json:"ejections,omitempty"`
	// ActiveRequests are picks of it not yet done.
	ActiveRequests int64 `json:"activeRequests"`
	// EWMA is the PeakEWMA latency estimate ("12.3ms"), for that policy.
	EWMA string `json:"ewma,omitempty"`
}

// BreakerSnapshot is a cluster's circuit breaker.
type BreakerSnapshot struct {
	// State is "closed", "open" or "half-open".
	State string `json:"state"`
	// Its settings: ConsecutiveFailures open it for OpenFor.
	ConsecutiveFailuresToOpen uint32 `json:"consecutiveFailuresToOpen"`
	OpenFor                   string `json:"openFor"`
	// The counts of the current state.
	Requests            uint32 `json:"requests"`
	Failures            uint32 `json:"failures"`
	ConsecutiveFailures uint32 `json:"consecutiveFailures"`
	// Opens counts its openings; OpenedAt is the last.
	Opens    uint64    `json:"opens"`
	OpenedAt time.Time `json:"openedAt,omitzero"`
	// OpenUntil is when an open breaker lets a probe through.
	OpenUntil time.Time `json:"openUntil,omitzero"`
}

// LimitsSnapshot is a cluster's connection-pool limits (nil: none) and
// what is in flight against them.
type LimitsSnapshot struct {
	MaxRequests    *uint32 `json:"maxRequests,omitempty"`
	MaxRetries     *uint32 `json:"maxRetries,omitempty"`
	MaxConnections *uint32 `json:"maxConnections,omitempty"`
	// RetryBudget is the retry budget, when one replaces MaxRetries.
	RetryBudget *RetryBudgetSnapshot `json:"retryBudget,omitempty"`
	// ActiveRequests, ActiveRetries and Connections are in flight now;
	// RetriesAllowed is how many retries may be (-1: no limit).
	ActiveRequests int64 `json:"activeRequests"`
	ActiveRetries  int64 `json:"activeRetries"`
	Connections    int64 `json:"connections"`
	RetriesAllowed int64 `json:"retriesAllowed"`
	// MaxRequestsPerConnection and IdleTimeout bound a connection's
	// life; 0 and "" when unset.
	MaxRequestsPerConnection uint32 `json:"maxRequestsPerConnection,omitempty"`
	IdleTimeout              string `json:"idleTimeout,omitempty"`
}

// RetryBudgetSnapshot is a retry budget: at most Percent of the requests
// in flight, and never fewer than MinRetryConcurrency.
type RetryBudgetSnapshot struct {
	Percent             float64 `json:"percent"`
	MinRetryConcurrency uint32  `json:"minRetryConcurrency"`
}

// Snapshot returns every cluster the core follows, by name.
func (c *Core) Snapshot() []ClusterSnapshot {
	type held struct {
		cl      *Cluster
		problem string
		hosts   []string
		eds     string
	}
	c.mu.Lock()
	all := make([]held, 0, len(c.clusters))
	for _, cl := range c.clusters {
		h := held{cl: cl, eds: cl.edsName}
		if err := cl.gapLocked(); err != nil {
			h.problem = err.Error()
		}
		for host := range cl.hosts {
			h.hosts = append(h.hosts, host.name)
		}
		slices.Sort(h.hosts)
		all = append(all, h)
	}
	c.mu.Unlock()
	slices.SortFunc(all, func(a, b held) int { return strings.Compare(a.cl.name, b.cl.name) })

	out := make([]ClusterSnapshot, 0, len(all))
	for _, h := range all {
		cl := h.cl
		st := cl.state.Load()
		cs := ClusterSnapshot{Name: cl.name, Problem: h.problem, Hosts: h.hosts, EDSName: h.eds, Endpoints: []EndpointSnapshot{}}
		if h.hosts == nil {
			cs.Hosts = []string{}
		}
		if st.bal != nil {
			cs.LBPolicy, cs.Ejections = st.bal.Policy().String(), st.bal.Ejections()
			for _, es := range st.bal.Status() {
				cs.Endpoints = append(cs.Endpoints, endpointSnapshot(es))
			}
		}
		if b := cl.breaker.Load(); b != nil {
			cs.Breaker = breakerSnapshot(b.State())
		}
		cs.Limits = limitsSnapshot(cl.gate.State(), st.conns)
		out = append(out, cs)
	}
	return out
}

func endpointSnapshot(es balancer.EndpointStatus) EndpointSnapshot {
	e := EndpointSnapshot{
		Address: es.Endpoint.Address, Priority: es.Endpoint.Priority, Weight: es.Endpoint.Weight,
		Healthy: !es.Endpoint.Unhealthy, Ejected: es.Ejected, EjectedUntil: es.EjectedUntil,
		EjectReason: es.EjectReason, Ejections: es.Ejections, ActiveRequests: es.Outstanding,
	}
	if l := es.Endpoint.Locality; l != (balancer.Locality{}) {
		e.Locality = l.String()
	}
	if es.RTT > 0 {
		e.EWMA = es.RTT.String()
	}
	return e
}

func breakerSnapshot(s policy.BreakerState) *BreakerSnapshot {
	b := &BreakerSnapshot{
		State:                     s.State,
		ConsecutiveFailuresToOpen: s.Settings.ConsecutiveFailures,
		OpenFor:                   s.Settings.OpenFor.String(),
		Requests:                  s.Requests,
		Failures:                  s.Failures,
		ConsecutiveFailures:       s.ConsecutiveFailures,
		Opens:                     s.Opens,
		OpenedAt:                  s.OpenedAt,
	}
	if s.State == policy.BreakerOpen && !s.OpenedAt.IsZero() {
		b.OpenUntil = s.OpenedAt.Add(s.Settings.OpenFor)
	}
	return b
}

func limitsSnapshot(g policy.GateState, life policy.ConnLifetime) LimitsSnapshot {
	ls := LimitsSnapshot{
		ActiveRequests: g.Requests, ActiveRetries: g.Retries, Connections: g.Connections, RetriesAllowed: g.RetriesAllowed,
		MaxRequestsPerConnection: life.MaxRequests,
	}
	if life.IdleTimeout > 0 {
		ls.IdleTimeout = life.IdleTimeout.String()
	}
	limit := func(n uint32) *uint32 {
		if n == policy.Unlimited {
			return nil
		}
		return &n
	}
	if l := g.Limits; l != nil {
		ls.MaxRequests, ls.MaxConnections = limit(l.MaxRequests), limit(l.MaxConnections)
		if l.Budget != nil {
			ls.RetryBudget = &RetryBudgetSnapshot{Percent: l.Budget.Percent, MinRetryConcurrency: l.Budget.MinRetryConcurrency}
		} else {
			ls.MaxRetries = limit(l.MaxRetries)
		}
	}
	return ls
}

// ClusterCounts are one cluster's counts, for metrics.
type ClusterCounts struct {
	Name string
	// Ejections counts outlier ejections and BreakerOpens openings of the
	// circuit breaker, cumulative while the balancer and breaker stay (a
	// change of their settings starts new ones, from zero).
	Ejections, BreakerOpens uint64
	// BreakerState is "closed", "open", "half-open", or "" without a
	// breaker.
	BreakerState string
}

// Counts returns the counts of every cluster followed. It locks the core
// to list them, then reads atomics and each breaker's state: cheap
// enough for a metrics callback.
func (c *Core) Counts() []ClusterCounts {
	c.mu.Lock()
	cls := make([]*Cluster, 0, len(c.clusters))
	for _, cl := range c.clusters {
		cls = append(cls, cl)
	}
	c.mu.Unlock()
	out := make([]ClusterCounts, 0, len(cls))
	for _, cl := range cls {
		cc := ClusterCounts{Name: cl.name}
		if bal := cl.state.Load().bal; bal != nil {
			cc.Ejections = bal.Ejections()
		}
		if b := cl.breaker.Load(); b != nil {
			cc.BreakerOpens, cc.BreakerState = b.Opens(), b.State().State
		}
		out = append(out, cc)
	}
	slices.SortFunc(out, func(a, b ClusterCounts) int { return strings.Compare(a.Name, b.Name) })
	return out
}
