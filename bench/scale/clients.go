//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshlet/meshlet/bench/internal/controlchannel"
	"github.com/meshlet/meshlet/resolver"
)

// fingerprint stands for a set of endpoint addresses: the sum of a hash of
// each, and how many. It does not depend on order, and it keeps what
// every client holds small at C=1,000 and N=10,000 (the clients' own
// memory is what the benchmark measures, not this).
type fingerprint struct {
	sum uint64
	n   int
}

// fingerprintSeed is the one seed of the process: fingerprints are
// compared across clients and with those topology.want makes.
var fingerprintSeed = maphash.MakeSeed()

// maphash (AES-based where the CPU has it) is well mixed in every bit, so
// a plain sum of its hashes stands for the set; a byte-at-a-time FNV with
// a finaliser was a tenth of this process's CPU.
func (f *fingerprint) add(addr string) {
	f.sum += maphash.String(fingerprintSeed, addr)
	f.n++
}

func (f *fingerprint) addBytes(addr []byte) {
	f.sum += maphash.Bytes(fingerprintSeed, addr)
	f.n++
}

// clientServiceAccount is the identity of the xDS clients.
const clientServiceAccount = "bench-client"

// fleet is the C light xDS clients, and what each should hold. A client
// has converged when every service's endpoints it holds are exactly the
// wanted set; it notes when it got there.
type fleet struct {
	services, size int
	clusterNames   []string       // by service
	clusterIndex   map[string]int // cluster name → service

	mu        sync.Mutex
	want      []fingerprint
	since     time.Time // when the wanted state was asked for
	clients   []*member
	converged int
	done      chan struct{} // closed when every one of size clients converged
	nack      error         // the first update a client rejected

	// What the -light clients received (resolver.Clients count nothing).
	responses, bytes atomic.Int64
	reconnects       atomic.Int64 // streams the control plane ended, opened again
}

func newFleet(services, size int) *fleet {
	f := &fleet{services: services, size: size, done: make(chan struct{}), clusterIndex: map[string]int{}}
	for k := range services {
		f.clusterNames = append(f.clusterNames, clusterName(k))
		f.clusterIndex[clusterName(k)] = k
	}
	return f
}

// member is one client as the fleet sees it: what it holds of each
// service, and when it converged. The client itself is a resolverClient
// or, with -light, an adsClient.
type member struct {
	started time.Time
	stop    func() // stops the client; set once it started

	// Under fleet.mu.
	have    []fingerprint
	matched int       // services whose endpoints are as wanted
	at      time.Time // when it converged to the wanted state; zero if not
}

// resolverClient is one meshlet xDS client (resolver.Client, its own ADS
// stream on its own connection) watching every service's Cluster and the
// endpoints that Cluster names: the resources an endpoint churn changes.
// It watches no Listener or RouteConfiguration.
type resolverClient struct {
	f  *fleet
	m  *member
	rc *resolver.Client

	mu         sync.Mutex
	cancels    []func()
	edsStarted []bool
}

// expect makes want the state every client should converge to, asked for
// at since, and returns the channel closed once all have.
func (f *fleet) expect(want []fingerprint, since time.Time) <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.want, f.since = want, since
	f.converged = 0
	f.done = make(chan struct{})
	for _, c := range f.clients {
		c.matched = 0
		c.at = time.Time{}
		for k := range f.services {
			if c.have[k] == f.want[k] {
				c.matched++
			}
		}
		if c.matched == f.services {
			c.at = since
			f.converged++
		}
	}
	f.maybeDone()
	return f.done
}

func (f *fleet) maybeDone() {
	if f.converged == f.size && len(f.clients) == f.size {
		select {
		case <-f.done:
		default:
			close(f.done)
		}
	}
}

// update notes that client c now holds fp for service k.
func (f *fleet) update(c *member, k int, fp fingerprint, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	was := c.have[k] == f.want[k]
	c.have[k] = fp
	is := fp == f.want[k]
	switch {
	case was && !is:
		c.matched--
	case !was && is:
		c.matched++
	}
	switch {
	case c.matched == f.services && c.at.IsZero():
		c.at = now
		f.converged++
		f.maybeDone()
	case c.matched < f.services && !c.at.IsZero():
		// Left the wanted state again: only its last arrival counts.
		c.at = time.Time{}
		f.converged--
	}
}

func (f *fleet) rejected(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nack == nil {
		f.nack = err
	}
}

// wait waits until every client converged, and returns how long each
// took from since (the churn's start), and from its own start.
func (f *fleet) wait(ctx context.Context, done <-chan struct{}) (fromChange, fromStart []time.Duration, err error) {
	select {
	case <-done:
	case <-ctx.Done():
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.nack != nil {
		return nil, nil, fmt.Errorf("a client rejected an update: %w", f.nack)
	}
	if f.converged < f.size {
		return nil, nil, fmt.Errorf("%d of %d clients hold the wanted endpoints: %w", f.converged, f.size, ctx.Err())
	}
	for _, c := range f.clients {
		fromChange = append(fromChange, c.at.Sub(f.since))
		fromStart = append(fromStart, c.at.Sub(c.started))
	}
	return fromChange, fromStart, nil
}

// start starts client i (a resolver.Client, or with light an adsClient)
// and its watches; it converges on its own.
func (f *fleet) start(ctx context.Context, ch *controlchannel.Channel, i int, light bool) error {
	m := &member{started: time.Now(), have: make([]fingerprint, f.services)}
	if light {
		c, err := startADSClient(ctx, f, m, ch, i)
		if err != nil {
			return err
		}
		m.stop = c.Close
	} else {
		c := &resolverClient{f: f, m: m, edsStarted: make([]bool, f.services)}
		rc, err := resolver.New(ctx,
			resolver.WithServers(ch.Addr()),
			resolver.WithDialOptions(ch.DialOptions(clientServiceAccount)...),
			resolver.WithNode(resolver.Node{Namespace: benchNamespace, ServiceAccount: clientServiceAccount, WorkloadName: fmt.Sprintf("bench-client-%d", i)}),
			resolver.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))),
		)
		if err != nil {
			return err
		}
		c.rc = rc
		m.stop = c.Close
		// Watch before joining the fleet: Close may run as soon as it has.
		for k := range f.services {
			cancel := rc.WatchCluster(clusterName(k), func(cl resolver.Cluster, err error) { c.onCluster(k, cl, err) })
			c.mu.Lock()
			c.cancels = append(c.cancels, cancel)
			c.mu.Unlock()
		}
	}
	f.mu.Lock()
	f.clients = append(f.clients, m)
	f.mu.Unlock()
	return nil
}

// onCluster runs on the client's callback goroutine, as onEndpoints does.
func (c *resolverClient) onCluster(k int, cl resolver.Cluster, err error) {
	if err != nil {
		c.f.rejected(fmt.Errorf("cluster %s: %w", clusterName(k), err))
		return
	}
	c.mu.Lock()
	if c.edsStarted[k] {
		c.mu.Unlock()
		return
	}
	c.edsStarted[k] = true
	c.mu.Unlock()
	cancel := c.rc.WatchEndpoints(cl.EDSServiceName, func(e resolver.Endpoints, err error) { c.onEndpoints(k, e, err) })
	c.mu.Lock()
	c.cancels = append(c.cancels, cancel)
	c.mu.Unlock()
}

func (c *resolverClient) onEndpoints(k int, e resolver.Endpoints, err error) {
	now := time.Now()
	var fp fingerprint
	switch {
	case errors.Is(err, resolver.ErrResourceNotFound):
		// No endpoints: fp stays empty.
	case err != nil:
		c.f.rejected(fmt.Errorf("endpoints of %s: %w", clusterName(k), err))
		return
	default:
		for _, l := range e.Localities {
			for _, ep := range l.Endpoints {
				if ep.Healthy {
					fp.add(ep.Address)
				}
			}
		}
	}
	c.f.update(c.m, k, fp, now)
}

// Close stops the client and its watches.
func (c *resolverClient) Close() {
	c.mu.Lock()
	cancels := c.cancels
	c.cancels = nil
	c.mu.Unlock()
	for _, cancel := range cancels {
		cancel()
	}
	c.rc.Close()
}

// Close stops every client.
func (f *fleet) Close() {
	f.mu.Lock()
	clients := f.clients
	f.clients = nil
	f.mu.Unlock()
	for _, c := range clients {
		c.stop()
	}
}
