// Package xdsclient is the transport half of meshlet's xDS client: one
// state-of-the-world ADS stream, subscriptions by name, ACK and NACK,
// reconnection with backoff and failover, the resource cache, and the
// does-not-exist timers. It knows nothing about what the resources mean:
// each resource type brings a Decode function that validates a resource and
// converts it to the caller's value type.
//
// # When a full-state response says a name does not exist
//
// A name the client has received and that a full-state (LDS, CDS)
// response leaves out was removed: its watchers are told at once.
//
// A name never received is harder: the response may answer a request sent
// before the name was subscribed. The server answers only a request that
// carries the nonce of its last response (it ignores the others as stale),
// so the response answers one of the requests sent since the previous
// response of the type was received; not one that asked for nothing new
// (the ACK of that response, or one that drops a name) if the response
// has the version that request holds, since a server answers such a
// request only with a new version (askLog). If every request the response can answer named the
// name, the omission is an answer about it, and the name does not exist:
// told at once, one round trip after the subscription, which keeps
// unknown hosts fast. Otherwise the name was subscribed while the
// response was in flight (subscribe A, then B, and get the answer to
// [A]), and the name is only suspected. The client's next request, its
// ACK, names it, so a server that has it answers in a round trip. The
// suspicion is settled by the next response that names it, or leaves it
// out by the rule above, or by AbsentConfirmDelay passing after that
// request went out with no response naming it: a server with nothing to
// add need not answer an ACK. gRPC-Go ignores such omissions and waits for
// its 15s timer. NotFoundTimeout bounds everything.
package xdsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/anypb"
)

// ResourceType describes one xDS resource type.
type ResourceType struct {
	// URL is the type URL, "type.googleapis.com/envoy.config....".
	URL string
	// Short is the name used in messages: "Listener", "Cluster", ...
	Short string
	// FullState is set for the types whose state-of-the-world responses
	// always hold every subscribed resource that exists (LDS and CDS): a
	// name left out of such a response does not exist, as the package doc
	// says when that is known for sure.
	FullState bool
	// Decode validates one resource of this type and converts it. It
	// returns the resource's name whenever it can read it, also with an
	// error, so that the error can be charged to that resource.
	Decode func(*anypb.Any) (name string, value any, err error)
	// NameField is the number of the message's name field, a string (1
	// in Listener, RouteConfiguration, Cluster and ClusterLoadAssignment).
	// With it, a resource that comes again with the bytes of the value in
	// force is named by reading that field alone, and not decoded again:
	// most of a response is unchanged. Zero decodes every resource.
	NameField protowire.Number
	// Forget, if set, is called with the name of a resource that is no
	// longer subscribed, under the client's lock: a Decode that keeps
	// state by name drops it. It must not block.
	Forget func(name string)
}

// Config configures a Client.
type Config struct {
	Servers     []string
	Node        *corev3.Node
	DialOptions []grpc.DialOption
	Log         *slog.Logger
	// BackoffBase and BackoffMax bound the exponential backoff between
	// rounds of connection attempts (one attempt per server per round).
	BackoffBase, BackoffMax time.Duration
	// NotFoundTimeout is how long a subscribed name may go unanswered on a
	// live stream before its watchers are told it does not exist. Zero or
	// less turns the timer off.
	NotFoundTimeout time.Duration
	// AbsentConfirmDelay is how long a never-received name that a
	// full-state response left out, while the response may have answered
	// a request without it, waits after the next request naming it for a
	// response that names it, before it is taken as absent (see the
	// package doc). Zero or less means DefaultAbsentConfirmDelay.
	AbsentConfirmDelay time.Duration
	// Types are the resource types that can be watched, in the order their
	// requests are sent.
	Types []*ResourceType
	// NotFound is wrapped by the error a watcher gets when its resource
	// does not exist: a full-state type's response left it out (see the
	// package doc), or no response named it within NotFoundTimeout.
	NotFound error
	// Now and AfterFunc are the clock of the reconnect backoff, the
	// does-not-exist timers and the spacing of repeated NACKs. AfterFunc
	// calls f once d has passed, never from within the AfterFunc call, and
	// stop cancels that, as time.AfterFunc and (*time.Timer).Stop do. nil
	// means the system clock's; tests pass a fake one.
	Now       func() time.Time
	AfterFunc func(d time.Duration, f func()) (stop func() bool)
}

// DefaultAbsentConfirmDelay is the AbsentConfirmDelay used when none is
// set. It stands for one round trip to the control plane and its answer,
// from memory, to an ACK that adds a name: a few milliseconds within a
// region, and 300ms is more than the longest round trip over land and sea
// (about 250ms). Shorter would risk telling watchers that a name which
// exists does not (until the next response brings it back: under
// PassThrough a request would leave the mesh); longer delays the answer
// for a name that does not exist, in that race, whenever the control
// plane stays silent about it, as meshlet's does today.
const DefaultAbsentConfirmDelay = 300 * time.Millisecond

// Client is an ADS client. It is safe for concurrent use.
type Client struct {
	cfg   Config
	log   *slog.Logger
	types map[string]*ResourceType

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	calls  *serializer

	upOnce sync.Once
	up     chan struct{} // closed when the first stream is up

	mu     sync.Mutex
	closed bool
	state  map[string]*typeState // by type URL
	stream *streamState          // nil while disconnected
	conn   Connection
	wasUp  bool // conn.Up has been set once: a later Up is a return

	// Cumulative, read without the lock (see Stats).
	connects, disconnects atomic.Uint64
}

// Connection is the client's connection to the control plane.
type Connection struct {
	// Up is set from a stream's first response until that stream ends: a
	// stream that opens and fails without a word is not a connection.
	Up bool
	// Server is the address Up is about.
	Server string
	// Since is when Up last changed, or when the client started.
	Since time.Time
	// Err is why the last stream ended, or the last attempt failed, while
	// not Up.
	Err error
	// Again is set while Up if the client had been up before: it
	// reconnected.
	Again bool
}

// typeState is what the client holds of one type, across streams.
type typeState struct {
	rt *ResourceType
	// version is the last version accepted (ACKed). It is sent on a new
	// stream, so that a server that still serves it need not send it again.
	version   string
	resources map[string]*resourceState

	counters typeCounters // read without the lock
	// versionAt is when version was accepted; lastNACK is the last
	// rejection, kept after later ACKs so that it can still be seen.
	versionAt time.Time
	lastNACK  *NACK
}

// resourceState is one subscribed name.
type resourceState struct {
	watchers map[*watcher]struct{}
	has      bool // value holds the last good resource
	value    any
	raw      []byte // the resource as last received, to skip unchanged ones (and for Dump)
	notFound bool   // the server said, or the timer decided, it does not exist
	lastErr  string // the rejection last reported, not reported again
	timer    *notFoundTimer
	version  string    // of the last response that carried value
	at       time.Time // when value last changed
	nackedAt string    // the version lastErr came with
	// suspected is set, for the stream's life, when a full-state response
	// left out the never-received name but may have answered a request
	// without it; confirm then runs from the next request naming it.
	suspected bool
	confirm   *notFoundTimer
}

// notFoundTimer is a does-not-exist or confirmation timer; its address
// tells a fired timer from the one that replaced it.
type notFoundTimer struct{ stop func() bool }

type watcher struct {
	fn       func(any, error)
	canceled bool // guarded by Client.mu
}

// streamState is the state of one ADS stream.
type streamState struct {
	addr      string
	wake      chan struct{}
	nodeSent  bool
	healthy   bool                        // a response arrived
	nonce     map[string]string           // last nonce received, by type
	nack      map[string]*statuspb.Status // error_detail for the next request
	dirty     map[string]bool             // a request must be sent
	requested map[string]bool             // a request was sent on this stream
	notBefore map[string]time.Time        // repeated NACKs are spaced out
	nacked    map[string]string           // the version last NACKed
	nackCount map[string]int              // consecutive NACKs of nacked
	asks      map[string]*askLog          // by type
}

// New starts a client and waits until its first ADS stream is up, or ctx
// ends. After New returns, the client keeps (re)connecting until Close.
func New(ctx context.Context, cfg Config) (*Client, error) {
	if len(cfg.Servers) == 0 {
		return nil, errors.New("no control-plane address")
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.NotFound == nil {
		cfg.NotFound = errors.New("resource does not exist")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.AbsentConfirmDelay <= 0 {
		cfg.AbsentConfirmDelay = DefaultAbsentConfirmDelay
	}
	if cfg.AfterFunc == nil {
		cfg.AfterFunc = func(d time.Duration, f func()) func() bool { return time.AfterFunc(d, f).Stop }
	}
	c := &Client{
		cfg:   cfg,
		log:   cfg.Log,
		types: map[string]*ResourceType{},
		state: map[string]*typeState{},
		up:    make(chan struct{}),
		calls: newSerializer(),
		conn:  Connection{Since: time.Now()},
	}
	for _, rt := range cfg.Types {
		c.types[rt.URL] = rt
		c.state[rt.URL] = &typeState{rt: rt, resources: map[string]*resourceState{}}
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.wg.Add(2)
	go func() {
		defer c.wg.Done()
		c.calls.run()
	}()
	go func() {
		defer c.wg.Done()
		c.run()
	}()
	select {
	case <-c.up:
		return c, nil
	case <-ctx.Done():
		c.Close()
		return nil, fmt.Errorf("no control plane reachable at %v: %w", cfg.Servers, ctx.Err())
	}
}

// Close stops the client and waits for its goroutines. Watchers are not
// called after Close returns.
func (c *Client) Close() {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	for _, ts := range c.state {
		for _, rs := range ts.resources {
			stopTimer(rs)
		}
	}
	c.mu.Unlock()
	c.cancel()
	c.calls.close()
	c.wg.Wait()
}

// Watch subscribes to one resource. fn is called, on the client's callback
// goroutine, with every new value (err nil), with Config.NotFound
// wrapped when the resource does not exist (value nil), and with other
// errors when an update of it was rejected (value: the last good one, or
// nil). A resource already cached is delivered at once. After cancel
// returns, fn is not called again.
func (c *Client) Watch(typeURL, name string, fn func(any, error)) (cancel func()) {
	w := &watcher{fn: fn}
	c.mu.Lock()
	defer c.mu.Unlock()
	ts := c.state[typeURL]
	if ts == nil || c.closed {
		err := fmt.Errorf("unknown resource type %q", typeURL)
		if c.closed {
			err = errors.New("client closed")
		}
		c.calls.put(func() { fn(nil, err) })
		return func() {}
	}
	rs := ts.resources[name]
	if rs == nil {
		rs = &resourceState{watchers: map[*watcher]struct{}{}}
		ts.resources[name] = rs
		c.markDirtyLocked(typeURL)
	}
	rs.watchers[w] = struct{}{}
	switch {
	case rs.has:
		v := rs.value
		c.notifyLocked(w, v, nil)
	case rs.notFound:
		c.notifyLocked(w, nil, c.notFoundError(ts.rt, name))
	}
	var once sync.Once
	return func() {
		once.Do(func() { c.unwatch(typeURL, name, w) })
	}
}

func (c *Client) unwatch(typeURL, name string, w *watcher) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w.canceled = true
	ts := c.state[typeURL]
	rs := ts.resources[name]
	if rs == nil {
		return
	}
	delete(rs.watchers, w)
	if len(rs.watchers) == 0 {
		// The name stays, with its cached value and timers, until the
		// request that leaves it out is sent (send drops it then): a
		// watch of it again before that is still subscribed, as the
		// server sees it, and is answered from the cache. Dropped at
		// once, a new watch would ask for a name the server believes it
		// already sent, and hear nothing.
		c.markDirtyLocked(typeURL)
	}
}

// notifyLocked queues a call of w. The call is skipped if w is canceled by
// then.
func (c *Client) notifyLocked(w *watcher, v any, err error) {
	c.calls.put(func() {
		c.mu.Lock()
		canceled := w.canceled
		c.mu.Unlock()
		if !canceled {
			w.fn(v, err)
		}
	})
}

func (c *Client) notifyAllLocked(rs *resourceState, v any, err error) {
	for w := range rs.watchers {
		c.notifyLocked(w, v, err)
	}
}

func (c *Client) notFoundError(rt *ResourceType, name string) error {
	return fmt.Errorf("%s %q: %w", rt.Short, name, c.cfg.NotFound)
}

func (c *Client) markDirtyLocked(typeURL string) {
	if ss := c.stream; ss != nil {
		ss.dirty[typeURL] = true
		select {
		case ss.wake <- struct{}{}:
		default:
		}
	}
}

// stopTimer stops the resource's does-not-exist timer and drops its
// suspicion with its confirmation timer.
func stopTimer(rs *resourceState) {
	if rs.timer != nil {
		rs.timer.stop()
		rs.timer = nil
	}
	unsuspect(rs)
}

func unsuspect(rs *resourceState) {
	rs.suspected = false
	if rs.confirm != nil {
		rs.confirm.stop()
		rs.confirm = nil
	}
}

// absentLocked tells the watchers of a name that it does not exist.
func (c *Client) absentLocked(ts *typeState, name string, rs *resourceState) {
	stopTimer(rs)
	ts.counters.removed.Add(1)
	rs.has, rs.value, rs.raw, rs.notFound = false, nil, nil, true
	c.notifyAllLocked(rs, nil, c.notFoundError(ts.rt, name))
}

// run connects to the servers in turn until Close. A round tries each
// server once; between failed rounds it backs off exponentially with
// jitter. A stream that got a response resets the backoff.
func (c *Client) run() {
	idx, failures := 0, 0
	for {
		addr := c.cfg.Servers[idx]
		healthy, err := c.runStream(addr)
		if c.ctx.Err() != nil {
			return
		}
		if healthy {
			failures = 0 // runStream said the connection was lost
		} else {
			failures++
			c.log.Debug("xDS stream to control plane failed", "server", addr, "err", err)
			c.mu.Lock()
			c.conn.Server, c.conn.Err = addr, err
			c.mu.Unlock()
		}
		idx = (idx + 1) % len(c.cfg.Servers)
		if failures == 0 || failures%len(c.cfg.Servers) != 0 {
			continue // try the next server at once
		}
		d := backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, failures/len(c.cfg.Servers)-1)
		c.mu.Lock()
		wasUp := c.wasUp
		c.mu.Unlock()
		if failures == len(c.cfg.Servers) && !wasUp {
			// A lost connection was said once, when it was lost; this is
			// for a client that never had one.
			c.log.Warn("no control plane reachable yet; retrying", "servers", c.cfg.Servers, "err", err)
		}
		fired := make(chan struct{})
		stop := c.cfg.AfterFunc(d, func() { close(fired) })
		select {
		case <-c.ctx.Done():
			stop()
			return
		case <-fired:
		}
	}
}

// backoff is base*2^n, capped at max, with ±20% jitter.
func backoff(base, max time.Duration, n int) time.Duration {
	d := base
	for i := 0; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	jitter := 0.8 + 0.4*rand.Float64()
	return time.Duration(float64(d) * jitter)
}

// runStream runs one ADS stream to addr until it breaks or the client
// closes. It reports whether the stream got any response.
func (c *Client) runStream(addr string) (healthy bool, err error) {
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	conn, err := grpc.NewClient(addr, c.cfg.DialOptions...)
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return false, err
	}

	ss := &streamState{
		addr:      addr,
		wake:      make(chan struct{}, 1),
		nonce:     map[string]string{},
		nack:      map[string]*statuspb.Status{},
		dirty:     map[string]bool{},
		requested: map[string]bool{},
		notBefore: map[string]time.Time{},
		nacked:    map[string]string{},
		nackCount: map[string]int{},
		asks:      map[string]*askLog{},
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false, errors.New("client closed")
	}
	c.stream = ss
	for url := range c.state {
		ss.dirty[url] = true
	}
	c.mu.Unlock()
	c.upOnce.Do(func() { close(c.up) })
	c.log.Debug("xDS stream to control plane open", "server", addr)

	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		if err := c.send(ctx, stream, ss); err != nil && ctx.Err() == nil {
			c.log.Debug("xDS send failed", "server", addr, "err", err)
		}
		cancel()
	}()

	for {
		resp, rerr := stream.Recv()
		if rerr != nil {
			err = rerr
			break
		}
		c.handleResponse(ss, resp)
	}
	cancel()
	<-sendDone

	c.mu.Lock()
	healthy = ss.healthy
	c.stream = nil
	for _, ts := range c.state {
		for _, rs := range ts.resources {
			stopTimer(rs)
		}
	}
	lost := healthy && !c.closed
	if lost {
		c.conn = Connection{Server: addr, Since: time.Now(), Err: err}
		c.disconnects.Add(1)
	}
	c.mu.Unlock()
	if lost {
		c.log.Warn("lost the connection to the control plane; keeping the last known config and reconnecting", "server", addr, "err", err)
	}
	return healthy, err
}

// Connection reports the client's connection to the control plane.
func (c *Client) Connection() Connection {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

// send writes the requests that the stream state says are due, in type
// order, until ctx ends or a send fails.
func (c *Client) send(ctx context.Context, stream discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient, ss *streamState) error {
	for {
		var reqs []*discoveryv3.DiscoveryRequest
		var wait time.Duration = -1
		now := c.cfg.Now()
		c.mu.Lock()
		for _, rt := range c.cfg.Types {
			url := rt.URL
			if !ss.dirty[url] {
				continue
			}
			if nb := ss.notBefore[url]; now.Before(nb) {
				if d := nb.Sub(now); wait < 0 || d < wait {
					wait = d
				}
				continue
			}
			ss.dirty[url] = false
			ts := c.state[url]
			for name, rs := range ts.resources {
				if len(rs.watchers) == 0 { // unwatched: this request unsubscribes it
					stopTimer(rs)
					delete(ts.resources, name)
					if rt.Forget != nil {
						rt.Forget(name)
					}
				}
			}
			names := slices.Sorted(maps.Keys(ts.resources))
			if len(names) == 0 && !ss.requested[url] {
				// Nothing to ask for. (An empty first request would be a
				// wildcard subscription.)
				continue
			}
			req := &discoveryv3.DiscoveryRequest{
				TypeUrl:       url,
				ResourceNames: names,
				VersionInfo:   ts.version,
				ResponseNonce: ss.nonce[url],
				ErrorDetail:   ss.nack[url],
			}
			if !ss.nodeSent {
				req.Node = c.cfg.Node
				ss.nodeSent = true
			}
			delete(ss.nack, url)
			ss.requested[url] = true
			ss.askLog(url).request(req)
			reqs = append(reqs, req)
		}
		c.mu.Unlock()

		for _, req := range reqs {
			if err := stream.Send(req); err != nil {
				return err
			}
			if req.ErrorDetail != nil {
				c.log.Warn("rejected xDS update (NACK)", "type", c.types[req.TypeUrl].Short, "nonce", req.ResponseNonce, "keeping", req.VersionInfo, "reason", req.ErrorDetail.GetMessage())
			}
			c.startTimers(ss, req)
		}

		// A NACK held back wakes the loop when it is due.
		stop := func() bool { return false }
		if wait >= 0 {
			stop = c.cfg.AfterFunc(wait, func() {
				select {
				case ss.wake <- struct{}{}:
				default:
				}
			})
		}
		select {
		case <-ctx.Done():
		case <-ss.wake:
		}
		stop()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// startTimers starts the does-not-exist timer of every name just requested
// that has no value yet, and the confirmation timer of every suspected
// name the request is the server's cue to answer for.
func (c *Client) startTimers(ss *streamState, req *discoveryv3.DiscoveryRequest) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != ss || c.closed {
		return
	}
	ts := c.state[req.TypeUrl]
	// A request built before the last response carries an older nonce:
	// the server ignores it, so it is no cue.
	current := req.GetResponseNonce() == ss.nonce[req.TypeUrl]
	for _, name := range req.ResourceNames {
		rs := ts.resources[name]
		if rs == nil || rs.has || rs.notFound {
			continue
		}
		if c.cfg.NotFoundTimeout > 0 && rs.timer == nil {
			c.startNotFoundLocked(ts, name, rs)
		}
		if rs.suspected && rs.confirm == nil && current {
			c.startConfirmLocked(ts, name, rs)
		}
	}
}

func (c *Client) startNotFoundLocked(ts *typeState, name string, rs *resourceState) {
	t := &notFoundTimer{}
	t.stop = c.cfg.AfterFunc(c.cfg.NotFoundTimeout, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || ts.resources[name] != rs || rs.timer != t || rs.has {
			return
		}
		rs.timer = nil
		c.log.Warn("xDS resource not sent by the control plane; treating it as absent", "type", ts.rt.Short, "name", name, "after", c.cfg.NotFoundTimeout)
		c.absentLocked(ts, name, rs)
	})
	rs.timer = t
}

func (c *Client) startConfirmLocked(ts *typeState, name string, rs *resourceState) {
	t := &notFoundTimer{}
	t.stop = c.cfg.AfterFunc(c.cfg.AbsentConfirmDelay, func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || ts.resources[name] != rs || rs.confirm != t || rs.has || !rs.suspected {
			return
		}
		rs.confirm = nil
		c.log.Debug("xDS resource left out of a full-state response and not sent since; treating it as absent", "type", ts.rt.Short, "name", name, "after", c.cfg.AbsentConfirmDelay)
		c.absentLocked(ts, name, rs)
	})
	rs.confirm = t
}

// handleResponse applies a response: the valid resources replace the
// cached ones, the invalid ones are reported to their watchers and the
// response is NACKed, and for a full-state type the subscribed names it
// leaves out are removed.
func (c *Client) handleResponse(ss *streamState, resp *discoveryv3.DiscoveryResponse) {
	url := resp.GetTypeUrl()
	rt := c.types[url]
	if rt == nil {
		c.log.Warn("xDS response of a type never asked for; ignoring it", "type", url)
		return
	}
	ts := c.state[url]
	// Decoding runs without the lock, so that watches are not held up;
	// each lookup takes it. A value is a function of its bytes, so what a
	// lookup returns stays right for those bytes whatever happens to the
	// cache before the lock is taken again below.
	dec := DecodeResponse(rt, resp, func(name string, raw []byte) (any, []byte, bool) {
		c.mu.Lock()
		defer c.mu.Unlock()
		rs := ts.resources[name]
		if rs == nil || !rs.has || string(rs.raw) != string(raw) {
			return nil, nil, false
		}
		return rs.value, rs.raw, true
	})

	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stream != ss || c.closed {
		return
	}
	if !ss.healthy {
		c.connectedLocked(ss)
	}
	ss.nonce[url] = resp.GetNonce()
	ss.dirty[url] = true
	ts.counters.responses.Add(1)
	now := time.Now()
	var present map[string]bool
	if dec.AllNamed {
		present = make(map[string]bool, len(dec.Resources))
		for _, r := range dec.Resources {
			present[r.Name] = true
		}
	}
	asked := ss.askLog(url).response(resp.GetVersionInfo(), present)
	if dec.Err == nil {
		ts.counters.acks.Add(1)
		ts.version, ts.versionAt = resp.GetVersionInfo(), now
		ss.nacked[url], ss.nackCount[url] = "", 0
		delete(ss.notBefore, url)
	} else {
		msg := dec.Err.Error()
		if len(msg) > maxDetail {
			msg = msg[:maxDetail] + "..."
		}
		ss.nack[url] = &statuspb.Status{Code: int32(codes.InvalidArgument), Message: msg}
		ts.counters.nacks.Add(1)
		ts.lastNACK = &NACK{Version: resp.GetVersionInfo(), Nonce: resp.GetNonce(), Err: msg, At: now}
		// A server that ignores NACKs sends the same rejected version again
		// at once; space such repeats out instead of spinning.
		if ss.nacked[url] == resp.GetVersionInfo() {
			ss.nackCount[url]++
			ss.notBefore[url] = c.cfg.Now().Add(backoff(c.cfg.BackoffBase, c.cfg.BackoffMax, ss.nackCount[url]-1))
		} else {
			ss.nacked[url], ss.nackCount[url] = resp.GetVersionInfo(), 0
			delete(ss.notBefore, url)
		}
	}

	for _, r := range dec.Resources {
		rs := ts.resources[r.Name]
		if rs == nil {
			if rt.Forget != nil {
				rt.Forget(r.Name) // decoded all the same
			}
			continue // not subscribed (any more)
		}
		// Named, so it exists, valid or not.
		unsuspect(rs)
		if r.Err != nil {
			// A server that ignores NACKs sends the same rejected resource
			// again and again; tell the watchers once.
			ts.counters.rejected.Add(1)
			if msg := r.Err.Error(); msg != rs.lastErr {
				rs.lastErr, rs.nackedAt = msg, resp.GetVersionInfo()
				c.notifyAllLocked(rs, rs.value, fmt.Errorf("update rejected, the last good value stays in force: %w", r.Err))
			}
			continue
		}
		stopTimer(rs)
		rs.notFound, rs.lastErr, rs.nackedAt = false, "", ""
		if r.Unchanged {
			ts.counters.unchanged.Add(1)
		}
		if rs.has && string(rs.raw) == string(r.Raw) {
			rs.version = resp.GetVersionInfo()
			continue
		}
		ts.counters.updates.Add(1)
		rs.has, rs.value, rs.raw, rs.version, rs.at = true, r.Value, r.Raw, resp.GetVersionInfo(), now
		c.notifyAllLocked(rs, r.Value, nil)
	}
	if rt.FullState && dec.AllNamed {
		for name, rs := range ts.resources {
			if present[name] || rs.notFound {
				continue
			}
			// A name received before was removed. A name never received
			// does not exist if the server was asked for it; else the
			// response may have been in flight when it was subscribed
			// (see the package doc).
			if !rs.has && !asked(name) {
				if !rs.suspected {
					rs.suspected = true
					c.log.Debug("xDS resource left out of a response that may predate its subscription; confirming", "type", rt.Short, "name", name)
				}
				continue
			}
			c.absentLocked(ts, name, rs)
		}
	}
	select {
	case ss.wake <- struct{}{}:
	default:
	}
}

func (ss *streamState) askLog(url string) *askLog {
	l := ss.asks[url]
	if l == nil {
		l = &askLog{}
		ss.asks[url] = l
	}
	return l
}

// connectedLocked records the first response of a stream: the client is
// connected, and says so once per connection.
func (c *Client) connectedLocked(ss *streamState) {
	ss.healthy = true
	now := time.Now()
	if c.wasUp {
		c.log.Info("connection to the control plane is back", "server", ss.addr, "after", now.Sub(c.conn.Since).Round(time.Millisecond))
	} else {
		c.log.Info("connected to the control plane", "server", ss.addr)
	}
	c.conn = Connection{Up: true, Server: ss.addr, Since: now, Again: c.wasUp}
	c.wasUp = true
	c.connects.Add(1)
}

// maxDetail bounds the NACK message sent to the control plane.
const maxDetail = 8 << 10
