package mesh

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

// HTTPTransport is the mesh's http.RoundTripper; see Mesh.HTTPTransport.
type HTTPTransport struct {
	m    *Mesh
	rc   *resolver.Client
	view *view // hosts and their routes, shared with the mesh's other clients
	opts httpOptions

	mu        sync.Mutex
	upstreams map[string]*upstream // by cluster name
	closed    bool
}

// Close stops following the config of the clusters used and closes idle
// connections.
func (t *HTTPTransport) Close() error {
	t.m.mu.Lock()
	delete(t.m.transports, t)
	t.m.mu.Unlock()
	t.mu.Lock()
	upstreams := t.upstreams
	t.upstreams, t.closed = map[string]*upstream{}, true
	t.mu.Unlock()
	for _, up := range upstreams {
		up.stop()
	}
	return nil
}

// upstream follows one cluster and its endpoints, and holds its balancer
// and connections.
type upstream struct {
	t    *HTTPTransport
	name string

	mu          sync.Mutex
	changed     chan struct{} // closed at the next change
	cluster     resolver.Cluster
	haveCluster bool
	endpoints   []balancer.Endpoint
	haveEPs     bool
	healthy     int // endpoints the control plane says are healthy
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
	up := &upstream{t: t, name: name, changed: make(chan struct{})}
	t.upstreams[name] = up
	if t.closed {
		up.err = errors.New("mesh: HTTP transport closed")
		return up
	}
	up.cancel = t.rc.WatchCluster(name, up.onCluster)
	return up
}

// fireLocked wakes the waiters.
func (up *upstream) fireLocked() {
	close(up.changed)
	up.changed = make(chan struct{})
}

func (up *upstream) onCluster(c resolver.Cluster, err error) {
	if err != nil {
		up.mu.Lock()
		if errors.Is(err, resolver.ErrResourceNotFound) || !up.haveCluster {
			up.err, up.haveCluster = err, false
		}
		up.fireLocked()
		up.mu.Unlock()
		return
	}
	up.mu.Lock()
	up.cluster, up.haveCluster, up.err = c, true, nil
	if up.bal == nil || !sameBalancing(up.policy, c) {
		bal, err := balancer.New(balancerConfig(c, up.t.m.opts.locality))
		if err != nil {
			up.err, up.haveCluster = fmt.Errorf("mesh: %s: %w", describeCluster(c.Name), err), false
			up.fireLocked()
			up.mu.Unlock()
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
	up.fireLocked()
	up.mu.Unlock()
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
	if errors.Is(err, resolver.ErrResourceNotFound) {
		// Never sent within the resolver's timeout: none.
		up.mu.Lock()
		if !up.haveEPs {
			up.haveEPs = true
			up.fireLocked()
		}
		up.mu.Unlock()
		return
	}
	if err != nil {
		// Endpoints are never removed by absence; keep the last ones.
		up.t.m.log.Warn("mesh: endpoints", "cluster", up.name, "err", err)
		return
	}
	var eps []balancer.Endpoint
	healthy := 0
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
			if ep.Healthy {
				healthy++
			}
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
	up.endpoints, up.haveEPs, up.healthy = eps, true, healthy
	up.fireLocked()
	up.mu.Unlock()
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
		tr.TLSClientConfig = security.ClientTLSConfig(up.t.m.identity, explainSANs(c, serverAuthorizer(c.TLS, up.t.m.spiffeID.TrustDomain())))
		// The SNI the cluster asks for goes in the ClientHello; the
		// server is verified by its SANs, not by this name.
		tr.TLSClientConfig.ServerName = c.TLS.SNI
	}
	if up.transport != nil {
		up.transport.CloseIdleConnections()
	}
	up.transport, up.tls, up.sans = tr, useTLS, sans
}

// explainSANs adds to authz's refusal which cluster expected the SANs and
// where the control plane took them from.
func explainSANs(c resolver.Cluster, authz tlsconfig.Authorizer) tlsconfig.Authorizer {
	from := "the service accounts of its endpoints, unless a ServiceEntry for the host sets subjectAltNames"
	for _, san := range c.TLS.SANs {
		if _, err := spiffeid.FromString(san); err != nil {
			from = "the subjectAltNames of the ServiceEntry for the host"
			break
		}
	}
	if len(c.TLS.SANMatchers) > 0 {
		from = "the cluster's match_subject_alt_names"
	}
	what := describeCluster(c.Name)
	return func(id spiffeid.ID, chains [][]*x509.Certificate) error {
		if err := authz(id, chains); err != nil {
			return fmt.Errorf("mesh: %s: %w; the control plane took the expected names from %s", what, err, from)
		}
		return nil
	}
}

// wait blocks until the cluster and its endpoints are known, as
// ConfigWait says: for the control plane's answers, and while the
// registration grace lasts, for a cluster that does not exist or has no
// healthy endpoint yet. Once the grace is over, a cluster without
// endpoints is left to the balancer to refuse; one that does not exist is
// an error.
func (up *upstream) wait(ctx context.Context) error {
	m := up.t.m
	start := time.Now()
	limit := start.Add(m.wait.Timeout)
	for {
		up.mu.Lock()
		changed := up.changed
		haveCluster, haveEPs, healthy, err := up.haveCluster, up.haveEPs, up.healthy, up.err
		up.mu.Unlock()
		if haveCluster && haveEPs && healthy > 0 {
			return nil
		}
		now := time.Now()
		var until time.Time
		switch {
		case haveCluster && haveEPs, errors.Is(err, resolver.ErrResourceNotFound):
			// Its servers may not have registered yet.
			if until = m.graceEnd(up.t.rc, now); until.IsZero() {
				if haveCluster {
					return nil
				}
				return &gapError{what: describeCluster(up.name), problem: "does not exist", err: resolver.ErrResourceNotFound}
			}
		case err != nil:
			return err // rejected, with nothing in force
		}
		if !now.Before(limit) {
			if haveCluster && haveEPs {
				return nil
			}
			return m.noAnswer(up.t.rc, describeCluster(up.name), now.Sub(start), context.DeadlineExceeded)
		}
		if until.IsZero() || until.After(limit) {
			until = limit
		}
		if err := sleepUntil(ctx, changed, until); err != nil {
			return err
		}
	}
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
const pickTries = envoydefaults.PreviousHostsTries

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
