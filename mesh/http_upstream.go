package mesh

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

// HTTPTransport is the mesh's http.RoundTripper; see Mesh.HTTPTransport.
type HTTPTransport struct {
	m    *Mesh
	rc   *resolver.Client
	opts httpOptions

	mu        sync.Mutex
	targets   map[string]*target   // by client Listener name, host:port
	upstreams map[string]*upstream // by cluster name
	closed    bool
}

// Close stops following the config of the hosts used and closes idle
// connections.
func (t *HTTPTransport) Close() error {
	t.mu.Lock()
	targets, upstreams := t.targets, t.upstreams
	t.targets, t.upstreams, t.closed = map[string]*target{}, map[string]*upstream{}, true
	t.mu.Unlock()
	for _, tg := range targets {
		tg.stop()
	}
	for _, up := range upstreams {
		up.stop()
	}
	return nil
}

// ready is closed once something is known: a value or an error.
type ready struct {
	ch   chan struct{}
	once sync.Once
}

func newReady() ready    { return ready{ch: make(chan struct{})} }
func (r *ready) signal() { r.once.Do(func() { close(r.ch) }) }
func (r *ready) done() bool {
	select {
	case <-r.ch:
		return true
	default:
		return false
	}
}

// target follows one client Listener and its routes.
type target struct {
	ready
	mu          sync.Mutex
	routes      resolver.RouteConfig
	have        bool
	err         error
	routeName   string
	cancelRoute func()
	cancel      func()
}

func (t *HTTPTransport) target(name string) *target {
	t.mu.Lock()
	defer t.mu.Unlock()
	if tg, ok := t.targets[name]; ok {
		return tg
	}
	tg := &target{ready: newReady()}
	t.targets[name] = tg
	if t.closed {
		tg.err = errors.New("mesh: HTTP transport closed")
		tg.signal()
		return tg
	}
	tg.cancel = t.rc.WatchListener(name, func(l resolver.Listener, err error) {
		if err != nil {
			tg.setErr(err)
			return
		}
		if l.Inline != nil {
			tg.setRoutes(*l.Inline)
			return
		}
		tg.mu.Lock()
		same := l.RouteConfigName == tg.routeName
		old := tg.cancelRoute
		tg.routeName = l.RouteConfigName
		tg.mu.Unlock()
		if same {
			return
		}
		if old != nil {
			old()
		}
		cancel := t.rc.WatchRouteConfig(l.RouteConfigName, func(rc resolver.RouteConfig, err error) {
			if err != nil {
				tg.setErr(err)
				return
			}
			tg.setRoutes(rc)
		})
		tg.mu.Lock()
		tg.cancelRoute = cancel
		tg.mu.Unlock()
	})
	return tg
}

func (tg *target) setRoutes(rc resolver.RouteConfig) {
	tg.mu.Lock()
	tg.routes, tg.have, tg.err = rc, true, nil
	tg.mu.Unlock()
	tg.signal()
}

// setErr records an error. A removed resource ends the target's use; any
// other error keeps the last good routes, as the xDS client keeps them.
func (tg *target) setErr(err error) {
	tg.mu.Lock()
	if errors.Is(err, resolver.ErrResourceNotFound) || !tg.have {
		tg.err, tg.have = err, false
	}
	tg.mu.Unlock()
	tg.signal()
}

// wait returns the routes once known, or the error.
func (tg *target) wait(ctx context.Context) (resolver.RouteConfig, error) {
	select {
	case <-tg.ch:
	case <-ctx.Done():
		return resolver.RouteConfig{}, ctx.Err()
	}
	tg.mu.Lock()
	defer tg.mu.Unlock()
	if tg.have {
		return tg.routes, nil
	}
	return resolver.RouteConfig{}, tg.err
}

func (tg *target) stop() {
	tg.mu.Lock()
	cancels := []func(){tg.cancel, tg.cancelRoute}
	tg.mu.Unlock()
	for _, c := range cancels {
		if c != nil {
			c()
		}
	}
}

// upstream follows one cluster and its endpoints, and holds its balancer
// and connections.
type upstream struct {
	ready
	t    *HTTPTransport
	name string

	mu          sync.Mutex
	cluster     resolver.Cluster
	haveCluster bool
	endpoints   []balancer.Endpoint
	haveEPs     bool
	bal         *balancer.Balancer
	policy      resolver.Cluster // the fields the balancer was built from
	transport   *http.Transport
	tls         bool
	sans        string
	err         error
	edsName     string
	cancelEDS   func()
	cancel      func()
}

func (t *HTTPTransport) upstream(name string) *upstream {
	t.mu.Lock()
	defer t.mu.Unlock()
	if up, ok := t.upstreams[name]; ok {
		return up
	}
	up := &upstream{ready: newReady(), t: t, name: name}
	t.upstreams[name] = up
	if t.closed {
		up.err = errors.New("mesh: HTTP transport closed")
		up.signal()
		return up
	}
	up.cancel = t.rc.WatchCluster(name, up.onCluster)
	return up
}

func (up *upstream) onCluster(c resolver.Cluster, err error) {
	if err != nil {
		up.mu.Lock()
		if errors.Is(err, resolver.ErrResourceNotFound) || !up.haveCluster {
			up.err, up.haveCluster = err, false
		}
		up.mu.Unlock()
		up.signal()
		return
	}
	up.mu.Lock()
	up.cluster, up.haveCluster, up.err = c, true, nil
	if up.bal == nil || !sameBalancing(up.policy, c) {
		bal, err := balancer.New(balancerConfig(c, up.t.m.opts.locality))
		if err != nil {
			up.err = fmt.Errorf("mesh: cluster %s: %w", c.Name, err)
			up.mu.Unlock()
			up.signal()
			return
		}
		if up.haveEPs {
			bal.Update(up.endpoints) // validated when it was first taken
		}
		up.bal, up.policy = bal, c
	}
	up.setTransportLocked(c)
	edsName, old := c.EDSServiceName, up.cancelEDS
	changed := edsName != up.edsName
	up.edsName = edsName
	ready := up.haveEPs
	up.mu.Unlock()
	if ready {
		up.signal()
	}
	if !changed {
		return
	}
	if old != nil {
		old()
	}
	cancel := up.t.rc.WatchEndpoints(edsName, up.onEndpoints)
	up.mu.Lock()
	up.cancelEDS = cancel
	up.mu.Unlock()
}

func (up *upstream) onEndpoints(e resolver.Endpoints, err error) {
	if err != nil {
		// Endpoints are never removed by absence; keep the last ones.
		up.t.m.log.Warn("mesh: endpoints", "cluster", up.name, "err", err)
		return
	}
	var eps []balancer.Endpoint
	for _, l := range e.Localities {
		for _, ep := range l.Endpoints {
			eps = append(eps, balancer.Endpoint{
				Address:        ep.Address,
				Weight:         ep.Weight,
				Locality:       balancer.Locality{Region: l.Locality.Region, Zone: l.Locality.Zone, SubZone: l.Locality.SubZone},
				LocalityWeight: l.Weight,
				Priority:       l.Priority,
				Unhealthy:      !ep.Healthy,
			})
		}
	}
	up.mu.Lock()
	if up.bal != nil {
		if err := up.bal.Update(eps); err != nil {
			// The balancer keeps the previous set, and so does this.
			up.mu.Unlock()
			up.t.m.log.Warn("mesh: endpoints refused", "cluster", up.name, "err", err)
			return
		}
	}
	up.endpoints, up.haveEPs = eps, true
	ready := up.haveCluster
	up.mu.Unlock()
	if ready {
		up.signal()
	}
}

// sameBalancing reports whether two versions of a cluster balance alike,
// so that the balancer, and its per-endpoint state, can stay.
func sameBalancing(a, b resolver.Cluster) bool {
	return a.LBPolicy == b.LBPolicy && a.RingHash == b.RingHash &&
		(a.OutlierDetection == nil) == (b.OutlierDetection == nil) &&
		(a.OutlierDetection == nil || *a.OutlierDetection == *b.OutlierDetection)
}

func balancerConfig(c resolver.Cluster, local Locality) balancer.Config {
	cfg := balancer.Config{Locality: &balancer.LocalityConfig{Local: balancer.Locality{Region: local.Region, Zone: local.Zone, SubZone: local.SubZone}}}
	switch c.LBPolicy {
	case resolver.LeastRequest:
		cfg.Policy = balancer.LeastRequest
	case resolver.RingHash:
		cfg.Policy = balancer.RingHash
		cfg.RingHash = balancer.RingHashConfig{MinRingSize: uint64(c.RingHash.MinRingSize), MaxRingSize: uint64(c.RingHash.MaxRingSize)}
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

// setTransportLocked makes the connection pool for the cluster's TLS
// settings: mTLS checking the server's certificate against the cluster's
// SANs (security.AuthorizeServer), or plaintext.
func (up *upstream) setTransportLocked(c resolver.Cluster) {
	useTLS := c.TLS != nil
	sans := ""
	if useTLS {
		sans = fmt.Sprintf("%q %v", c.TLS.SANs, c.TLS.SANMatchers)
	}
	if up.transport != nil && up.tls == useTLS && up.sans == sans {
		return
	}
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	if useTLS {
		tr.TLSClientConfig = security.ClientTLSConfig(up.t.m.identity, serverAuthorizer(c.TLS, up.t.m.spiffeID.TrustDomain()))
	}
	if up.transport != nil {
		up.transport.CloseIdleConnections()
	}
	up.transport, up.tls, up.sans = tr, useTLS, sans
}

// wait blocks until the cluster and its endpoints are known.
func (up *upstream) wait(ctx context.Context) error {
	select {
	case <-up.ch:
	case <-ctx.Done():
		return ctx.Err()
	}
	up.mu.Lock()
	defer up.mu.Unlock()
	if up.haveCluster {
		return nil
	}
	return up.err
}

// send makes one attempt: picks an endpoint, sends, and tells the balancer
// how it went. It reports whether the policy retries the outcome.
func (up *upstream) send(ctx context.Context, req *http.Request, br balancer.Request, policy *resolver.RetryPolicy, tried map[string]bool) (*http.Response, bool, error) {
	up.mu.Lock()
	bal, tr, useTLS := up.bal, up.transport, up.tls
	up.mu.Unlock()
	if bal == nil {
		return nil, false, balancer.ErrNoEndpoints
	}
	res, err := pickUntried(bal, br, tried)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		// No endpoint: Envoy retries this as a connect failure.
		return nil, retryOn(policy, 0, err), err
	}
	tried[res.Endpoint.Address] = true
	req.URL.Host = res.Endpoint.Address
	req.URL.Scheme = "http"
	if useTLS {
		req.URL.Scheme = "https"
	}
	start := time.Now()
	attemptCtx, cancel := ctx, context.CancelFunc(func() {})
	if policy != nil && policy.PerTryTimeout > 0 {
		attemptCtx, cancel = context.WithTimeout(ctx, policy.PerTryTimeout)
		req = req.WithContext(attemptCtx)
	}
	resp, err := tr.RoundTrip(req)
	done := balancer.DoneInfo{Err: err, Latency: time.Since(start), At: time.Now()}
	status := 0
	switch {
	case err != nil && ctx.Err() != nil:
		done.Failure = balancer.FailureCaller
	case err != nil:
		done.Failure = balancer.FailureLocalOrigin
	default:
		status = resp.StatusCode
		switch {
		case status == 502 || status == 503 || status == 504:
			done.Failure = balancer.FailureGateway
		case status >= 500:
			done.Failure = balancer.Failure5xx
		}
	}
	res.Done(done)
	if err != nil {
		cancel()
		return nil, retryOn(policy, 0, err), err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, retryOn(policy, status, nil), nil
}

// pickTries is how many picks a retry makes to find an endpoint it has
// not tried, as Istio's default previous_hosts retry predicate (5).
const pickTries = 5

// pickUntried picks an endpoint the request has not tried yet, if one
// comes up within pickTries picks, else the last one picked.
func pickUntried(bal *balancer.Balancer, br balancer.Request, tried map[string]bool) (balancer.Result, error) {
	for i := 1; ; i++ {
		res, err := bal.Pick(br)
		if err != nil || !tried[res.Endpoint.Address] || i == pickTries {
			return res, err
		}
		res.Done(balancer.DoneInfo{Failure: balancer.FailureCaller}) // not sent: no verdict
	}
}

func (up *upstream) stop() {
	up.mu.Lock()
	cancels := []func(){up.cancel, up.cancelEDS}
	tr := up.transport
	up.mu.Unlock()
	for _, c := range cancels {
		if c != nil {
			c()
		}
	}
	if tr != nil {
		tr.CloseIdleConnections()
	}
}
