package balancer

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// ErrNoEndpoints is returned by Pick when no endpoint can be picked: there
// are none, or every one is unhealthy or ejected. The error Pick returns
// wraps it and says how many endpoints are in which state.
var ErrNoEndpoints = errors.New("balancer: no endpoint available")

// Locality is where an endpoint or a workload runs, as in EDS and
// Kubernetes topology labels. It is the one locality type of meshlet:
// resolver.Locality and mesh.Locality are this type.
type Locality struct {
	Region, Zone, SubZone string
}

// String returns "region/zone/subzone", Istio's form, without trailing
// empty parts.
func (l Locality) String() string {
	return strings.TrimRight(l.Region+"/"+l.Zone+"/"+l.SubZone, "/")
}

// Endpoint is one address of a cluster, as an EDS ClusterLoadAssignment
// gives it.
type Endpoint struct {
	// Address is "ip:port". It is the endpoint's identity across updates:
	// state (outstanding requests, latency estimate, ejection) follows it.
	Address string
	// Weight is the endpoint's load-balancing weight. 0 means 1.
	Weight uint32
	// Locality is where the endpoint runs.
	Locality Locality
	// LocalityWeight is the EDS load_balancing_weight of the endpoint's
	// locality. Within one priority, either every endpoint has one or none
	// has. With weights, a locality that has available endpoints is chosen
	// at random in proportion to its weight and the policy picks within it,
	// as gRPC-Go does (RingHash instead multiplies it into each endpoint's
	// weight, as gRPC-Go does). Without, localities are not considered.
	LocalityWeight uint32
	// Priority is the EDS priority; 0 is the highest. Pick uses the highest
	// priority that has an available endpoint.
	Priority uint32
	// Unhealthy marks an endpoint that EDS reports UNHEALTHY, DRAINING or
	// TIMEOUT. It is never picked. The zero value is healthy, as EDS's
	// UNKNOWN is.
	Unhealthy bool
	// Metadata holds labels. The balancer does not read it. It is not
	// copied, so it must not be changed after Update.
	Metadata map[string]string
}

// Request is what a policy may know about the request being balanced.
type Request struct {
	// Hash is the request's key for RingHash, which the caller computes
	// from a header, a cookie or the source address, for example with
	// HashString.
	Hash uint64
	// HasHash says that Hash is set. RingHash uses a random hash otherwise.
	HasHash bool
	// Now is the time of the request, read by PeakEWMA and by outlier
	// detection. The zero value means the Config.Now clock.
	Now time.Time
}

// HashString hashes a request key (a header value, a cookie, a source IP)
// for Request.Hash. It is xxhash64, the hash that Envoy and gRPC-Go use for
// their hash policies. Several header values are joined with "," first, as
// they do.
func HashString(s string) uint64 {
	return xxhash.Sum64String(s)
}

// Result is a picked endpoint.
type Result struct {
	Endpoint Endpoint
	// Done must be called exactly once, from any goroutine, when the
	// request ends. It does not block on I/O; it takes the balancer's lock
	// only when it ejects the endpoint. Calling it more than once skews
	// the outstanding count of the endpoint (it is kept from going below
	// zero) and the outlier counters. It is never nil.
	Done func(DoneInfo)
}

// FailureKind classifies how a request ended, for outlier detection.
type FailureKind int

const (
	// FailureNone is a success, or a response that is not a 5xx. It resets
	// the endpoint's consecutive-failure counters.
	FailureNone FailureKind = iota
	// Failure5xx is a 5xx response other than 502, 503 and 504. It counts
	// toward Consecutive5xx.
	Failure5xx
	// FailureGateway is a 502, 503 or 504 response. It counts toward
	// Consecutive5xx and ConsecutiveGatewayErrors.
	FailureGateway
	// FailureLocalOrigin is a failure seen on the caller's side while
	// talking to the endpoint: it could not be reached, reset the
	// connection, or timed out. As in Envoy, it counts as a gateway failure
	// (toward Consecutive5xx and ConsecutiveGatewayErrors), or only toward
	// ConsecutiveLocalOriginFailures when SplitLocalOriginErrors is set.
	FailureLocalOrigin
	// FailureCaller is a request that the caller ended (cancelled, or
	// refused by a local policy): it says nothing about the endpoint and is
	// not counted.
	FailureCaller
)

// DoneInfo reports how a request ended.
type DoneInfo struct {
	// Err is the request's error, if any. When Failure is FailureNone and
	// Err is not nil, an Err that is context.Canceled counts as
	// FailureCaller and any other as FailureLocalOrigin.
	Err error
	// Failure classifies the outcome; see FailureKind.
	Failure FailureKind
	// Latency is the request's duration as the caller measured it. PeakEWMA
	// learns from it; zero is not a sample.
	Latency time.Duration
	// At is when the request ended. The zero value means the Config.Now
	// clock.
	At time.Time
}

func (di *DoneInfo) kind() FailureKind {
	switch {
	case di.Failure != FailureNone:
		return di.Failure
	case di.Err == nil:
		return FailureNone
	case errors.Is(di.Err, context.Canceled):
		return FailureCaller
	}
	return FailureLocalOrigin
}

// Picker chooses an endpoint for one request.
//
// Pick is safe for concurrent use and does not block: it never waits for
// I/O, for an update or for another request. It returns an error that wraps
// ErrNoEndpoints when no endpoint can be picked. On success the caller must
// call Result.Done exactly once when the request ends.
type Picker interface {
	Pick(Request) (Result, error)
}

// Balancer balances requests over the endpoints of one cluster. Make one
// with New; the zero value is not usable. It is safe for concurrent use and
// starts no goroutines, so it needs no Close.
//
// Pick does not block (see Picker): it reads an immutable snapshot of the
// available endpoints and per-endpoint atomics. When an ejection has just
// ended it tries the balancer's lock to bring the endpoint back, and goes
// on without it if the lock is busy. Update blocks while other Updates run
// and holds the lock only to swap state, not while it builds rings.
type Balancer struct {
	s *settings

	snap atomic.Pointer[snapshot]

	// updateMu serialises Update.
	updateMu sync.Mutex

	// mu guards the fields below and the ejection fields of every
	// endpointState.
	mu     sync.Mutex
	states map[string]*endpointState
	levels []*staticLevel
	total  int

	ejections atomic.Uint64 // cumulative, for metrics
}

var _ Picker = (*Balancer)(nil)

// New returns a Balancer with no endpoints; Pick fails with ErrNoEndpoints
// until Update gives it some. It fails if cfg has an unknown policy or an
// out-of-range field.
func New(cfg Config) (*Balancer, error) {
	s, err := cfg.settings()
	if err != nil {
		return nil, err
	}
	b := &Balancer{s: s, states: map[string]*endpointState{}}
	b.rebuildLocked()
	return b, nil
}

// Update replaces the endpoint set. Endpoints are matched to the previous
// set by Address, and those that stay keep their state: outstanding
// requests, latency estimate, outlier counters and ejection. Update does
// not keep eps.
//
// Update returns an error, and keeps the previous set, when an endpoint has
// no address, an address appears twice, or locality weights are
// inconsistent. An empty set is valid: Pick then fails with ErrNoEndpoints.
func (b *Balancer) Update(eps []Endpoint) error {
	b.updateMu.Lock()
	defer b.updateMu.Unlock()
	levels, err := buildLevels(eps, b.s)
	if err != nil {
		return err
	}
	now := b.s.now().UnixNano()

	b.mu.Lock()
	defer b.mu.Unlock()
	states := make(map[string]*endpointState, len(eps))
	for _, l := range levels {
		for _, m := range l.members {
			st := b.states[m.ep.Address]
			if st == nil {
				st = newEndpointState(b, now)
			}
			states[m.ep.Address] = st
			m.st = st
		}
	}
	for addr, st := range b.states {
		if _, ok := states[addr]; !ok {
			st.removed = true
		}
	}
	b.states, b.levels, b.total = states, levels, len(eps)
	b.reviveLocked(now, false)
	b.rebuildLocked()
	return nil
}

// Pick chooses an endpoint for req. See Picker.
func (b *Balancer) Pick(req Request) (Result, error) {
	s := b.snap.Load()
	var now int64
	if b.s.needsTime || s.nextRevive != never {
		now = b.nanos(req.Now)
		if now >= s.nextRevive && b.mu.TryLock() {
			b.reviveLocked(now, true)
			b.mu.Unlock()
			s = b.snap.Load()
		}
	}
	for _, l := range s.levels {
		if m := l.pick(now, &req); m != nil {
			m.st.outstanding.Add(1)
			return Result{Endpoint: m.ep, Done: m.st.done}, nil
		}
	}
	return Result{}, s.err
}

func (b *Balancer) nanos(t time.Time) int64 {
	if t.IsZero() {
		t = b.s.now()
	}
	return t.UnixNano()
}

// EndpointStatus is the state of one endpoint, for debugging and admin
// pages.
type EndpointStatus struct {
	Endpoint Endpoint
	// Outstanding is the number of picks not yet Done.
	Outstanding int64
	// Ejected says that outlier detection has ejected the endpoint, until
	// EjectedUntil.
	Ejected      bool
	EjectedUntil time.Time
	// EjectReason is the detector that ejected it: Eject5xx,
	// EjectGateway or EjectLocalOrigin; empty when not ejected.
	EjectReason string
	// Ejections is the ejection-time multiplier (see OutlierConfig).
	Ejections int
	// RTT is the PeakEWMA latency estimate now; zero for other policies.
	RTT time.Duration
}

// Status reports every endpoint of the last Update, in the order Pick
// tries them (priority, locality distance, address). It takes the
// balancer's lock.
func (b *Balancer) Status() []EndpointStatus {
	now := b.s.now().UnixNano()
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reviveLocked(now, true)
	var out []EndpointStatus
	for _, l := range b.levels {
		for _, m := range l.members {
			st := m.st
			es := EndpointStatus{
				Endpoint:    m.ep,
				Outstanding: st.outstanding.Load(),
				Ejected:     st.ejected,
				Ejections:   int(st.backoff),
			}
			if st.ejected {
				es.EjectedUntil, es.EjectReason = time.Unix(0, st.until), st.reason
			}
			if b.s.policy == PeakEWMA {
				es.RTT = time.Duration(st.rttAt(now, b.s.tau))
			}
			out = append(out, es)
		}
	}
	return out
}

const never = math.MaxInt64

// endpointState is the state of one address, kept across updates.
type endpointState struct {
	b    *Balancer
	done func(DoneInfo) // st.finish, bound once

	outstanding atomic.Int64

	// PeakEWMA: writers hold ewmaMu; readers load without it and may see
	// an estimate and a stamp from two different writes, which is off by
	// one sample's worth at most.
	ewmaMu sync.Mutex
	rtt    atomic.Uint64 // float64 bits, nanoseconds
	stamp  atomic.Int64  // unix nanoseconds

	// Outlier counters.
	c5, cGateway, cLocal atomic.Int64

	// Guarded by b.mu.
	removed     bool
	ejected     bool
	reason      string // the detector that ejected it (Eject*)
	until       int64  // end of the ejection, unix nanoseconds
	backoff     int64  // ejection-time multiplier
	lastUneject int64  // when the last ejection ended; 0 if never
}

func newEndpointState(b *Balancer, now int64) *endpointState {
	st := &endpointState{b: b}
	st.done = st.finish
	st.rtt.Store(math.Float64bits(b.s.rtt0))
	st.stamp.Store(now)
	return st
}

// finish is Result.Done.
func (st *endpointState) finish(di DoneInfo) {
	if st.outstanding.Add(-1) < 0 {
		st.outstanding.Add(1)
	}
	s := st.b.s
	if s.policy == PeakEWMA && di.Latency > 0 {
		st.observe(float64(di.Latency), st.b.nanos(di.At), s.tau)
	}
	if s.outlier != nil {
		if reason := st.record(di.kind(), s.outlier); reason != "" {
			st.b.eject(st, st.b.nanos(di.At), reason)
		}
	}
}

// rttAt is the latency estimate at now, decayed since its last sample.
func (st *endpointState) rttAt(now int64, tau float64) float64 {
	rtt := math.Float64frombits(st.rtt.Load())
	if dt := now - st.stamp.Load(); dt > 0 {
		rtt *= math.Exp(-float64(dt) / tau)
	}
	return rtt
}

// observe adds a latency sample x taken at time at.
func (st *endpointState) observe(x float64, at int64, tau float64) {
	st.ewmaMu.Lock()
	defer st.ewmaMu.Unlock()
	rtt := math.Float64frombits(st.rtt.Load())
	stamp := st.stamp.Load()
	w := 1.0
	if dt := at - stamp; dt > 0 {
		w = math.Exp(-float64(dt) / tau)
		stamp = at
	}
	if x > rtt*w {
		rtt = x
	} else {
		rtt = rtt*w + x*(1-w)
	}
	st.rtt.Store(math.Float64bits(rtt))
	st.stamp.Store(stamp)
}

// errNoEndpoints describes why nothing can be picked.
func errNoEndpoints(total, unhealthy, ejected int) error {
	if total == 0 {
		return fmt.Errorf("%w: the endpoint set is empty", ErrNoEndpoints)
	}
	return fmt.Errorf("%w: %d of %d endpoints unhealthy, %d ejected by outlier detection", ErrNoEndpoints, unhealthy, total, ejected)
}
