package balancer

import (
	"fmt"
	"time"

	"github.com/meshlet/meshlet/internal/envoydefaults"
)

// PolicyKind names a load-balancing algorithm.
type PolicyKind int

const (
	// RoundRobin visits the available endpoints in turn and ignores their
	// weights, as gRPC-Go's round_robin does (Envoy's ROUND_ROBIN honours
	// weights: that is WeightedRoundRobin; with equal weights the two
	// agree). It is the zero value.
	RoundRobin PolicyKind = iota
	// WeightedRoundRobin visits the available endpoints in a fixed,
	// deterministic order in which each endpoint appears Weight times per
	// cycle, spread out by earliest deadline first (deadline (k+1)/Weight
	// for an endpoint's k-th turn).
	WeightedRoundRobin
	// LeastRequest draws two available endpoints at random and takes the
	// one with fewer outstanding requests per unit of Weight: the power of
	// two choices. With equal weights the two are distinct and drawn
	// uniformly; otherwise each is drawn in proportion to its weight, and a
	// tie goes to the first, so an idle cluster is shared by weight.
	// Istio's LEAST_REQUEST.
	LeastRequest
	// Random picks an available endpoint uniformly at random, ignoring
	// weights, as Envoy's RANDOM does.
	Random
	// RingHash is a consistent-hash ring (Istio's consistentHash): the same
	// Request.Hash goes to the same endpoint while the set is unchanged. See
	// RingHashConfig.
	RingHash
	// PeakEWMA draws two available endpoints as LeastRequest does and takes
	// the cheaper, where cost = rtt × (1 + outstanding/Weight) and rtt is a
	// peak-sensitive, time-decayed moving average of the latencies reported
	// to Done, as in Finagle and Linkerd (with equal weights: rtt ×
	// (outstanding+1)). See PeakEWMAConfig. Istio has no field for it; the
	// control plane selects it through a documented meshlet extension.
	PeakEWMA
)

var policyNames = [...]string{
	RoundRobin:         "RoundRobin",
	WeightedRoundRobin: "WeightedRoundRobin",
	LeastRequest:       "LeastRequest",
	Random:             "Random",
	RingHash:           "RingHash",
	PeakEWMA:           "PeakEWMA",
}

func (k PolicyKind) String() string {
	if k >= 0 && int(k) < len(policyNames) {
		return policyNames[k]
	}
	return fmt.Sprintf("PolicyKind(%d)", int(k))
}

// Config configures a Balancer. Zero fields take the documented defaults,
// so Config{} is round robin with priority failover and no outlier
// detection.
type Config struct {
	// Policy is the algorithm used within a priority level.
	Policy PolicyKind
	// RingHash configures the RingHash policy; other policies ignore it.
	RingHash RingHashConfig
	// PeakEWMA configures the PeakEWMA policy; other policies ignore it.
	PeakEWMA PeakEWMAConfig
	// Locality, when set, orders endpoints by their distance from the
	// caller within each EDS priority. Nil uses EDS priorities alone.
	Locality *LocalityConfig
	// Outlier, when set, turns on outlier detection. Nil turns it off.
	Outlier *OutlierConfig
	// Now is the clock, used when a Request or DoneInfo carries no time.
	// Default time.Now.
	Now func() time.Time
}

// Ring size bounds. DefaultMaxRingSize is also the largest allowed, as in
// Envoy.
const (
	DefaultMinRingSize = envoydefaults.MinRingSize
	DefaultMaxRingSize = envoydefaults.MaxRingSize
)

// RingHashConfig sizes the hash ring of the RingHash policy.
//
// Each endpoint of a priority level gets Weight × r points on the ring,
// where r is the smallest power of two for which the level's total reaches
// MinRingSize, lowered (to no less than 1) while the total exceeds
// MaxRingSize. The point hashes are xxhash64 of "<address>_<i>", as in
// Envoy and gRPC-Go. Because r is a power of two, it stays the same across
// most changes of the endpoint set, and then only the keys of the endpoints
// that left (or the keys taken by those that came) move. When the total
// weight crosses a power-of-two step (with the default 1024: from 8
// endpoints of weight 1 to 7, or 16 to 17), r doubles or halves and about
// half the keys move, as on any ring that is resized. Envoy and gRPC-Go
// resize on every change instead, so their rings place some keys
// differently from this one. If the total weight alone exceeds MaxRingSize,
// points are scaled down to MaxRingSize and proportionality becomes
// approximate.
type RingHashConfig struct {
	// MinRingSize is the least number of points. Default 1024
	// (DefaultMinRingSize).
	MinRingSize uint64
	// MaxRingSize is the most number of points. Default and maximum 8M
	// (DefaultMaxRingSize).
	MaxRingSize uint64
}

// Peak EWMA defaults, those of Linkerd's proxy.
const (
	DefaultEWMADecay = 10 * time.Second
	DefaultEWMARTT   = 30 * time.Millisecond
)

// PeakEWMAConfig configures the PeakEWMA policy.
//
// Each endpoint keeps an estimate E of its latency, with the time s of its
// last update. At time t:
//
//   - reading gives E × exp(-(t-s)/Decay): an idle estimate decays toward
//     zero, so an endpoint that was slow is tried again in time;
//   - a reported latency x (DoneInfo.Latency > 0) with w = exp(-(t-s)/Decay)
//     sets E = x if x > E×w (a peak replaces the estimate at once), and
//     otherwise E = E×w + x×(1-w); then s = t.
//
// A new endpoint starts at E = DefaultRTT. An endpoint's cost is the read
// estimate × (1 + outstanding/Weight), and Pick takes the cheaper of two
// endpoints drawn at random.
type PeakEWMAConfig struct {
	// Decay is the time constant of the moving average and of the idle
	// decay. Default 10s (DefaultEWMADecay), as Finagle and Linkerd.
	Decay time.Duration
	// DefaultRTT is the estimate of an endpoint that has reported nothing
	// yet. Default 30ms (DefaultEWMARTT), as Linkerd.
	DefaultRTT time.Duration
}

// LocalityConfig gives the caller's own locality. Within each EDS priority,
// endpoints are then split into sub-levels by their distance from Local:
// same region, zone and sub-zone first; then same region and zone; then
// same region; then the rest. A sub-level is used only when every closer
// one has no available endpoint. This is the order Istio's locality
// failover gives when a DestinationRule has localityLbSetting enabled and
// no explicit failover list, computed here on the client instead of in
// per-client EDS priorities.
type LocalityConfig struct {
	Local Locality
}

// Outlier detection defaults, those of Istio and Envoy.
const (
	DefaultConsecutive5xx                 = envoydefaults.Consecutive5xx
	DefaultConsecutiveLocalOriginFailures = envoydefaults.ConsecutiveLocalOriginFailure
	DefaultOutlierInterval                = envoydefaults.OutlierInterval
	DefaultBaseEjectionTime               = envoydefaults.BaseEjectionTime
	DefaultMaxEjectionTime                = envoydefaults.MaxEjectionTime
	DefaultMaxEjectionPercent             = envoydefaults.MaxEjectionPercent
)

// OutlierConfig configures outlier detection, as Istio's outlierDetection
// and Envoy's consecutive-error detectors.
//
// Detection is decided on Done reports, with no goroutine. Every failure
// counts toward the counters that DoneInfo.Failure lists, and a success
// resets them all. When a counter reaches its threshold it is reset, and
// the endpoint is ejected if that would not take the number of ejected
// endpoints above MaxEjectionPercent of all the endpoints of the last
// Update (healthy or not): an ejection is allowed when
// (ejected+1)×100 <= MaxEjectionPercent × total, as in Envoy. With the
// default 10% and fewer than 10 endpoints nothing is ejected, unless
// AlwaysEjectOne is set.
//
// An ejected endpoint is not picked until its ejection time has passed:
// BaseEjectionTime × m, capped at MaxEjectionTime, where m is one more than
// the previous multiplier less one for each whole Interval that has passed
// since the endpoint last came back (Envoy's backoff). It comes back at
// exactly that time, on the next Pick or Done; Envoy waits for the next
// Interval tick. Success-rate and failure-percentage detection are not
// implemented.
type OutlierConfig struct {
	// Consecutive5xx is the number of consecutive 5xx failures that ejects
	// an endpoint. Default 5; negative turns it off.
	Consecutive5xx int
	// ConsecutiveGatewayErrors is the number of consecutive gateway
	// failures that ejects an endpoint. Zero (the default) turns it off.
	ConsecutiveGatewayErrors int
	// SplitLocalOriginErrors counts FailureLocalOrigin apart from the 5xx
	// and gateway counters, against ConsecutiveLocalOriginFailures.
	SplitLocalOriginErrors bool
	// ConsecutiveLocalOriginFailures is the threshold of local-origin
	// failures when SplitLocalOriginErrors is set. Default 5; negative
	// turns it off.
	ConsecutiveLocalOriginFailures int
	// Interval is the step by which the ejection multiplier decays. Default
	// 10s.
	Interval time.Duration
	// BaseEjectionTime is the ejection time of a first ejection. Default 30s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps the ejection time. Default 300s, or
	// BaseEjectionTime if that is larger.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent is the largest share of endpoints ejected at once,
	// 1 to 100. Default 10.
	MaxEjectionPercent int
	// AlwaysEjectOne allows one ejection even when MaxEjectionPercent
	// would allow none (Envoy's always_eject_one_host).
	AlwaysEjectOne bool
}

// settings is a Config with its defaults applied.
type settings struct {
	policy    PolicyKind
	minRing   uint64
	maxRing   uint64
	tau       float64 // PeakEWMA decay, in nanoseconds
	rtt0      float64 // PeakEWMA default RTT, in nanoseconds
	local     *Locality
	outlier   *outlierSettings
	now       func() time.Time
	needsTime bool // the policy reads the time on Pick
}

type outlierSettings struct {
	c5, cGateway, cLocal int64
	split                bool
	interval             int64
	base                 int64
	max                  int64
	maxPercent           int
	alwaysOne            bool
}

func (c Config) settings() (*settings, error) {
	s := &settings{policy: c.Policy, now: c.Now}
	if c.Policy < 0 || int(c.Policy) >= len(policyNames) {
		return nil, fmt.Errorf("balancer: Config.Policy: unknown policy %v (use RoundRobin, WeightedRoundRobin, LeastRequest, Random, RingHash or PeakEWMA)", c.Policy)
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.minRing, s.maxRing = c.RingHash.MinRingSize, c.RingHash.MaxRingSize
	if s.minRing == 0 {
		s.minRing = DefaultMinRingSize
	}
	if s.maxRing == 0 {
		s.maxRing = DefaultMaxRingSize
	}
	if s.maxRing > DefaultMaxRingSize {
		return nil, fmt.Errorf("balancer: Config.RingHash.MaxRingSize: %d exceeds the limit %d", s.maxRing, DefaultMaxRingSize)
	}
	if s.minRing > s.maxRing {
		return nil, fmt.Errorf("balancer: Config.RingHash.MinRingSize: %d exceeds MaxRingSize %d", s.minRing, s.maxRing)
	}
	decay, rtt := c.PeakEWMA.Decay, c.PeakEWMA.DefaultRTT
	if decay < 0 || rtt < 0 {
		return nil, fmt.Errorf("balancer: Config.PeakEWMA: negative duration (Decay %v, DefaultRTT %v)", decay, rtt)
	}
	if decay == 0 {
		decay = DefaultEWMADecay
	}
	if rtt == 0 {
		rtt = DefaultEWMARTT
	}
	s.tau, s.rtt0 = float64(decay), float64(rtt)
	s.needsTime = c.Policy == PeakEWMA
	if c.Locality != nil {
		l := c.Locality.Local
		s.local = &l
	}
	if c.Outlier != nil {
		o, err := c.Outlier.settings()
		if err != nil {
			return nil, err
		}
		s.outlier = o
	}
	return s, nil
}

func (o *OutlierConfig) settings() (*outlierSettings, error) {
	s := &outlierSettings{
		c5:         threshold(o.Consecutive5xx, DefaultConsecutive5xx),
		cGateway:   max(int64(o.ConsecutiveGatewayErrors), 0),
		cLocal:     threshold(o.ConsecutiveLocalOriginFailures, DefaultConsecutiveLocalOriginFailures),
		split:      o.SplitLocalOriginErrors,
		maxPercent: o.MaxEjectionPercent,
		alwaysOne:  o.AlwaysEjectOne,
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		def  time.Duration
		out  *int64
	}{
		{"Interval", o.Interval, DefaultOutlierInterval, &s.interval},
		{"BaseEjectionTime", o.BaseEjectionTime, DefaultBaseEjectionTime, &s.base},
		{"MaxEjectionTime", o.MaxEjectionTime, max(DefaultMaxEjectionTime, o.BaseEjectionTime), &s.max},
	} {
		if d.v < 0 {
			return nil, fmt.Errorf("balancer: Config.Outlier.%s: negative duration %v", d.name, d.v)
		}
		if d.v == 0 {
			d.v = d.def
		}
		*d.out = int64(d.v)
	}
	if s.max < s.base {
		return nil, fmt.Errorf("balancer: Config.Outlier.MaxEjectionTime: %v is less than BaseEjectionTime %v", time.Duration(s.max), time.Duration(s.base))
	}
	if s.maxPercent == 0 {
		s.maxPercent = DefaultMaxEjectionPercent
	}
	if s.maxPercent < 0 || s.maxPercent > 100 {
		return nil, fmt.Errorf("balancer: Config.Outlier.MaxEjectionPercent: %d is not in 1..100", o.MaxEjectionPercent)
	}
	return s, nil
}

// threshold maps a configured count to a threshold: 0 is def, negative is
// off (0).
func threshold(v, def int) int64 {
	switch {
	case v < 0:
		return 0
	case v == 0:
		return int64(def)
	}
	return int64(v)
}
