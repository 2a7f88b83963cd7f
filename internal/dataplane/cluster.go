package dataplane

import (
	"context"
	"fmt"
	"time"

	"sync/atomic"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/resolver"
)

// Cluster follows one cluster and its endpoints, and holds its balancer.
type Cluster struct {
	core  *Core
	name  string
	state atomic.Pointer[clusterState] // read without the core's lock
	// The cluster's circuit breaking, shared by both transports.
	gate    policy.Gate
	breaker atomic.Pointer[policy.Breaker]

	// Guarded by core.mu.
	hosts     map[*Host]bool // whose routes send to it
	answered  bool
	exists    bool
	err       error
	config    resolver.Cluster // as last taken
	policy    resolver.Cluster // the fields the balancer was built from
	bal       *balancer.Balancer
	edsName   string
	haveEPs   bool
	endpoints []balancer.Endpoint
	healthy   int
	cancel    func()
	cancelEDS func()
}

// clusterState is what a pick reads. It is never changed once published.
type clusterState struct {
	bal       *balancer.Balancer
	tls       *resolver.UpstreamTLS
	tlsKey    string
	conns     policy.ConnLifetime
	endpoints []balancer.Endpoint
	healthy   int
}

// Name returns the cluster's name.
func (cl *Cluster) Name() string { return cl.name }

// TLS returns how the cluster's endpoints are reached over mTLS (nil
// for plaintext), and its TLSKey, computed once per change.
func (cl *Cluster) TLS() (*resolver.UpstreamTLS, string) {
	st := cl.state.Load()
	return st.tls, st.tlsKey
}

// Endpoints returns the cluster's endpoints as last known. The slice must
// not be changed.
func (cl *Cluster) Endpoints() []balancer.Endpoint { return cl.state.Load().endpoints }

// Pick picks an endpoint. The caller must call Result.Done once.
func (cl *Cluster) Pick(r balancer.Request) (balancer.Result, error) {
	bal := cl.state.Load().bal
	if bal == nil {
		return balancer.Result{}, fmt.Errorf("%s: %w", DescribeCluster(cl.name), balancer.ErrNoEndpoints)
	}
	res, err := bal.Pick(r)
	if err != nil {
		return res, fmt.Errorf("%s: %w", DescribeCluster(cl.name), err)
	}
	return res, nil
}

func (c *Core) onCluster(cl *Cluster, rc resolver.Cluster, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.clusters[cl.name] != cl {
		return
	}
	defer c.fireLocked()
	defer c.publishClusterLocked(cl)
	if err != nil {
		switch {
		case notFound(err):
			cl.answered, cl.exists, cl.err = true, false, err
		case !cl.exists:
			cl.answered, cl.err = true, err
		}
		return // a rejected update: what is in force stays
	}
	if cl.bal == nil || !sameBalancing(cl.policy, rc) {
		bal, err := balancer.New(balancerConfig(rc, c.cfg.Locality))
		if err != nil {
			cl.answered, cl.exists, cl.err = true, false, fmt.Errorf("%s: %w", DescribeCluster(rc.Name), err)
			return
		}
		if cl.haveEPs {
			bal.Update(cl.endpoints) // validated when it was first taken
		}
		cl.bal, cl.policy = bal, rc
	}
	cl.answered, cl.exists, cl.err, cl.config = true, true, nil, rc
	cl.setPolicies(rc)
	if rc.EDSServiceName == cl.edsName && cl.cancelEDS != nil {
		return
	}
	if cl.cancelEDS != nil {
		cl.cancelEDS()
	}
	eds := rc.EDSServiceName
	cl.edsName, cl.haveEPs = eds, false
	cl.cancelEDS = c.rc.WatchEndpoints(eds, func(e resolver.Endpoints, err error) { c.onEndpoints(cl, eds, e, err) })
}

func (c *Core) onEndpoints(cl *Cluster, eds string, e resolver.Endpoints, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.clusters[cl.name] != cl || cl.edsName != eds {
		return
	}
	var eps []balancer.Endpoint
	healthy := 0
	switch {
	case notFound(err):
		// Never sent within the resolver's timeout: none.
	case err != nil:
		// Endpoints are never removed by absence; keep the last ones.
		c.cfg.Log.Warn("mesh: endpoints", "cluster", cl.name, "err", err)
		return
	default:
		for _, l := range e.Localities {
			for _, ep := range l.Endpoints {
				eps = append(eps, balancer.Endpoint{
					Address:        ep.Address,
					Weight:         ep.Weight,
					Locality:       l.Locality,
					LocalityWeight: l.Weight,
					Priority:       l.Priority,
					Unhealthy:      !ep.Healthy,
				})
				if ep.Healthy {
					healthy++
				}
			}
		}
	}
	if cl.bal != nil {
		if err := cl.bal.Update(eps); err != nil {
			// The balancer keeps the previous set, and so does this.
			c.cfg.Log.Warn("mesh: endpoints refused", "cluster", cl.name, "err", err)
			return
		}
	}
	cl.endpoints, cl.haveEPs, cl.healthy = eps, true, healthy
	c.publishClusterLocked(cl)
	c.fireLocked()
}

func (c *Core) publishClusterLocked(cl *Cluster) {
	st := &clusterState{bal: cl.bal, endpoints: cl.endpoints, healthy: cl.healthy}
	if cl.exists {
		st.tls = cl.config.TLS
		st.conns = cl.config.Connections
	}
	st.tlsKey = TLSKey(st.tls)
	if !cl.haveEPs || !cl.exists {
		st.endpoints, st.healthy = nil, 0
	}
	cl.state.Store(st)
	for h := range cl.hosts {
		c.publishLocked(h)
	}
}

func (cl *Cluster) stopLocked() {
	for _, f := range []func(){cl.cancel, cl.cancelEDS} {
		if f != nil {
			f()
		}
	}
	cl.cancel, cl.cancelEDS = nil, nil
}

// gapLocked says what keeps the cluster from taking requests, or nil if
// nothing does.
func (cl *Cluster) gapLocked() error {
	what := DescribeCluster(cl.name)
	switch {
	case !cl.answered:
		return &GapError{What: what, Problem: "is not known yet (no answer from the control plane)"}
	case !cl.exists && cl.err != nil && !notFound(cl.err):
		return &GapError{What: what, Problem: "was rejected: " + cl.err.Error()}
	case !cl.exists:
		return &GapError{What: what, Problem: "does not exist", Err: resolver.ErrResourceNotFound}
	case !cl.haveEPs:
		return &GapError{What: what, Problem: "has no endpoints known yet (no answer from the control plane)"}
	case len(cl.endpoints) == 0:
		return &GapError{What: what, Problem: "has no endpoints (no server of it is registered and serving)", Err: balancer.ErrNoEndpoints}
	case cl.healthy == 0:
		return &GapError{What: what, Problem: fmt.Sprintf("has %d endpoints, none healthy", len(cl.endpoints)), Err: balancer.ErrNoEndpoints}
	}
	return nil
}

// Wait blocks until the cluster and its endpoints are known, as Waits
// says: for the control plane's answers, and while the registration
// grace lasts, for a cluster that does not exist or has no healthy
// endpoint yet. Once the grace is over, a cluster without endpoints is
// left to the balancer to refuse; one that does not exist is an error.
func (cl *Cluster) Wait(ctx context.Context) error {
	c := cl.core
	if st := cl.state.Load(); st.bal != nil && st.healthy > 0 {
		return nil // the common case, without a lock
	}
	start := time.Now()
	limit := start.Add(c.cfg.Waits.Timeout)
	for {
		c.mu.Lock()
		changed := c.changed
		gap := cl.gapLocked()
		ready := cl.exists && cl.haveEPs
		rejected := cl.err != nil && !cl.exists && !notFound(cl.err)
		missing := cl.answered && !cl.exists
		c.mu.Unlock()
		if gap == nil {
			return nil
		}
		now := time.Now()
		var until time.Time
		switch {
		case rejected:
			return gap // rejected, with nothing in force
		case ready, missing:
			// Its servers may not have registered yet.
			if until = c.GraceEnd(now); until.IsZero() {
				if ready {
					return nil
				}
				return gap
			}
		}
		if !now.Before(limit) {
			if ready {
				return nil
			}
			return c.NoAnswer(DescribeCluster(cl.name), now.Sub(start), context.DeadlineExceeded)
		}
		if until.IsZero() || until.After(limit) {
			until = limit
		}
		if err := SleepUntil(ctx, changed, until); err != nil {
			return err
		}
	}
}

// sameBalancing reports whether two versions of a cluster balance alike,
// so that the balancer, and its per-endpoint state, can stay.
func sameBalancing(a, b resolver.Cluster) bool {
	return a.LBPolicy == b.LBPolicy && a.RingHash == b.RingHash &&
		(a.OutlierDetection == nil) == (b.OutlierDetection == nil) &&
		(a.OutlierDetection == nil || *a.OutlierDetection == *b.OutlierDetection)
}

func balancerConfig(c resolver.Cluster, local balancer.Locality) balancer.Config {
	cfg := balancer.Config{Locality: &balancer.LocalityConfig{Local: local}}
	switch c.LBPolicy {
	case resolver.LeastRequest:
		cfg.Policy = balancer.LeastRequest
	case resolver.RingHash:
		cfg.Policy = balancer.RingHash
		cfg.RingHash = balancer.RingHashConfig{MinRingSize: c.RingHash.MinRingSize, MaxRingSize: c.RingHash.MaxRingSize}
	case resolver.Random:
		cfg.Policy = balancer.Random
	case resolver.PeakEWMA:
		// The balancer's defaults, those of Linkerd: Decay 10s, DefaultRTT
		// 30ms. The Cluster carries no settings for them.
		cfg.Policy = balancer.PeakEWMA
	default:
		cfg.Policy = balancer.WeightedRoundRobin
	}
	// Envoy ejects nothing when max_ejection_percent is 0; the balancer
	// reads 0 as its default, so detection is left off instead.
	if od := c.OutlierDetection; od != nil && od.MaxEjectionPercent > 0 {
		// Envoy runs a consecutive-error detector only while its count and
		// its enforcing percentage are above 0 (a percentage below 100 is
		// taken as 100). The balancer takes a negative threshold as off
		// for 5xx and local-origin failures, and 0 for gateway failures.
		detector := func(n, enforcing uint32) int {
			if n == 0 || enforcing == 0 {
				return -1
			}
			return int(n)
		}
		cfg.Outlier = &balancer.OutlierConfig{
			Consecutive5xx:                 detector(od.Consecutive5xx, od.EnforcingConsecutive5xx),
			ConsecutiveGatewayErrors:       max(detector(od.ConsecutiveGatewayFailure, od.EnforcingConsecutiveGatewayFailure), 0),
			SplitLocalOriginErrors:         od.SplitExternalLocalOriginErrors,
			ConsecutiveLocalOriginFailures: detector(od.ConsecutiveLocalOriginFailure, od.EnforcingConsecutiveLocalOriginFailure),
			Interval:                       od.Interval,
			BaseEjectionTime:               od.BaseEjectionTime,
			MaxEjectionTime:                od.MaxEjectionTime,
			MaxEjectionPercent:             int(od.MaxEjectionPercent),
		}
	}
	return cfg
}
