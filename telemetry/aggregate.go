package telemetry

import (
	"context"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meshlet aggregates its request and policy metrics itself, with atomics
// on series whose attribute sets are built once, and hands them to the
// OTel SDK's readers as a Producer at collection time. Recording through
// the SDK's instruments instead cost ~8 µs a request: the SDK normalises
// a measurement's attribute set (SetDedup, reflection) on every call,
// over Istio's 23 labels, four times a request.

// floatHist is a cumulative histogram of float64 values with fixed
// bounds. Its count is the sum of its buckets, so that a collection
// never shows a count below a bucket's.
type floatHist struct {
	buckets []atomic.Uint64 // len(bounds)+1
	sum     atomic.Uint64   // float64 bits
}

func (h *floatHist) record(bounds []float64, v float64) {
	h.buckets[bucketOf(bounds, v)].Add(1)
	for {
		old := h.sum.Load()
		if h.sum.CompareAndSwap(old, math.Float64bits(math.Float64frombits(old)+v)) {
			return
		}
	}
}

// intHist is a cumulative histogram of int64 values with fixed bounds.
type intHist struct {
	buckets []atomic.Uint64
	sum     atomic.Int64
}

func (h *intHist) record(bounds []float64, v int64) {
	h.buckets[bucketOf(bounds, float64(v))].Add(1)
	h.sum.Add(v)
}

// bucketOf is the index of v's bucket: the first bound v does not pass,
// as OTel's explicit buckets are (lower, upper]. Linear: the bounds are
// few and most values fall in the first ones.
func bucketOf(bounds []float64, v float64) int {
	for i, b := range bounds {
		if v <= b {
			return i
		}
	}
	return len(bounds)
}

func loadCounts(b []atomic.Uint64) (counts []uint64, total uint64) {
	counts = make([]uint64, len(b))
	for i := range b {
		counts[i] = b[i].Load()
		total += counts[i]
	}
	return counts, total
}

// requestSeries is one label set's request metrics.
type requestSeries struct {
	attrs    attribute.Set
	start    time.Time
	requests atomic.Int64
	duration floatHist
	reqSize  intHist
	resSize  intHist
}

func newRequestSeries(attrs attribute.Set, start time.Time) *requestSeries {
	s := &requestSeries{attrs: attrs, start: start}
	// One allocation for the three histograms' buckets.
	all := make([]atomic.Uint64, len(durationBuckets)+1+2*(len(sizeBuckets)+1))
	n := len(durationBuckets) + 1
	s.duration.buckets = all[:n:n]
	s.reqSize.buckets = all[n : n+len(sizeBuckets)+1 : n+len(sizeBuckets)+1]
	s.resSize.buckets = all[n+len(sizeBuckets)+1:]
	return s
}

func (s *requestSeries) record(ms float64, reqBytes, resBytes int64) {
	s.requests.Add(1)
	s.duration.record(durationBuckets, ms)
	s.reqSize.record(sizeBuckets, reqBytes)
	s.resSize.record(sizeBuckets, resBytes)
}

// counterSeries is one label set's count of a policy metric.
type counterSeries struct {
	attrs attribute.Set
	start time.Time
	n     atomic.Int64
}

// maxSeries bounds the series of each metric. Past it, new label sets
// are counted in one series labelled otel_metric_overflow="true", as
// the OTel SDK's cardinality limit does: a label of unbounded values
// would be a bug, and it must not grow memory without end.
const maxSeries = 4 * maxLabelSets

var overflowAttrs = attribute.NewSet(attribute.Bool("otel.metric.overflow", true))

// aggregator holds every series of a Telemetry, shared by its Recorders:
// two recorders with the same labels (two meshes of one service) count
// in one series. It is the Producer of meshlet's metrics.
type aggregator struct {
	start time.Time

	mu          sync.Mutex
	requests    map[attribute.Distinct]*requestSeries
	requestList []*requestSeries // in creation order, for Produce
	reqOverflow *requestSeries
	counters    [policyMetrics]map[attribute.Distinct]*counterSeries
	counterList [policyMetrics][]*counterSeries
	ctrOverflow [policyMetrics]*counterSeries

	states stateSources
}

var _ sdkmetric.Producer = (*aggregator)(nil)

func newAggregator() *aggregator {
	return &aggregator{start: time.Now(), requests: map[attribute.Distinct]*requestSeries{}}
}

// requestSeries returns the series of attrs, made on first use.
func (a *aggregator) requestSeries(attrs attribute.Set) *requestSeries {
	a.mu.Lock()
	defer a.mu.Unlock()
	if s := a.requests[attrs.Equivalent()]; s != nil {
		return s
	}
	if len(a.requests) >= maxSeries {
		return a.requestOverflowLocked()
	}
	s := newRequestSeries(attrs, time.Now())
	a.requests[attrs.Equivalent()] = s
	a.requestList = append(a.requestList, s)
	return s
}

// requestOverflow is the series of label sets past the bound.
func (a *aggregator) requestOverflow() *requestSeries {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.requestOverflowLocked()
}

func (a *aggregator) requestOverflowLocked() *requestSeries {
	if a.reqOverflow == nil {
		a.reqOverflow = newRequestSeries(overflowAttrs, time.Now())
		a.requestList = append(a.requestList, a.reqOverflow)
	}
	return a.reqOverflow
}

// counter returns the series of attrs of a policy metric.
func (a *aggregator) counter(which uint8, attrs attribute.Set) *counterSeries {
	a.mu.Lock()
	defer a.mu.Unlock()
	m := a.counters[which]
	if m == nil {
		m = map[attribute.Distinct]*counterSeries{}
		a.counters[which] = m
	}
	if s := m[attrs.Equivalent()]; s != nil {
		return s
	}
	if len(m) >= maxSeries {
		attrs = overflowAttrs
		if s := a.ctrOverflow[which]; s != nil {
			return s
		}
	}
	s := &counterSeries{attrs: attrs, start: time.Now()}
	if attrs.Equivalent() == overflowAttrs.Equivalent() {
		a.ctrOverflow[which] = s
	} else {
		m[attrs.Equivalent()] = s
	}
	a.counterList[which] = append(a.counterList[which], s)
	return s
}

// policyMetricInfo names the policy metrics, by their index.
var policyMetricInfo = [policyMetrics]struct{ name, desc string }{
	policyRetry:       {MetricRetries, "Retry attempts, by destination cluster."},
	policyRateLimited: {MetricRateLimited, "Requests refused by a local rate limit."},
	policyCircuitOpen: {MetricCircuitOpen, "Requests refused by a cluster's circuit breaking (limits or open breaker)."},
	policyFault:       {MetricFaultsInjected, "Faults injected, by kind (abort, delay)."},
	policyDenied:      {MetricAuthorizationDeny, "Requests refused by AuthorizationPolicy."},
	policyNoUpstream:  {MetricNoHealthyUpstreams, "Requests that found no healthy endpoint."},
}

// Produce returns every series' cumulative value now: Istio's request
// metrics, meshlet's policy counts, and the state of the meshes that
// registered a source. It is safe for concurrent use with recording.
func (a *aggregator) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	now := time.Now()
	a.mu.Lock()
	reqs := slices.Clone(a.requestList)
	var ctrs [policyMetrics][]*counterSeries
	for i := range ctrs {
		ctrs[i] = slices.Clone(a.counterList[i])
	}
	a.mu.Unlock()

	var out []metricdata.Metrics
	if len(reqs) > 0 {
		out = append(out, requestMetrics(reqs, now)...)
	}
	for i, list := range ctrs {
		if len(list) == 0 {
			continue
		}
		pts := make([]metricdata.DataPoint[int64], len(list))
		for j, s := range list {
			pts[j] = metricdata.DataPoint[int64]{Attributes: s.attrs, StartTime: s.start, Time: now, Value: s.n.Load()}
		}
		out = append(out, metricdata.Metrics{Name: policyMetricInfo[i].name, Description: policyMetricInfo[i].desc,
			Data: metricdata.Sum[int64]{DataPoints: pts, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}})
	}
	out = append(out, a.states.metrics(a.start, now)...)
	if len(out) == 0 {
		return nil, nil
	}
	return []metricdata.ScopeMetrics{{Scope: instrumentation.Scope{Name: scope}, Metrics: out}}, nil
}

// requestMetrics are Istio's four metrics of the series.
func requestMetrics(reqs []*requestSeries, now time.Time) []metricdata.Metrics {
	total := make([]metricdata.DataPoint[int64], len(reqs))
	dur := make([]metricdata.HistogramDataPoint[float64], len(reqs))
	reqSize := make([]metricdata.HistogramDataPoint[int64], len(reqs))
	resSize := make([]metricdata.HistogramDataPoint[int64], len(reqs))
	for i, s := range reqs {
		total[i] = metricdata.DataPoint[int64]{Attributes: s.attrs, StartTime: s.start, Time: now, Value: s.requests.Load()}
		counts, n := loadCounts(s.duration.buckets)
		dur[i] = metricdata.HistogramDataPoint[float64]{Attributes: s.attrs, StartTime: s.start, Time: now,
			Count: n, Bounds: durationBuckets, BucketCounts: counts, Sum: math.Float64frombits(s.duration.sum.Load())}
		counts, n = loadCounts(s.reqSize.buckets)
		reqSize[i] = metricdata.HistogramDataPoint[int64]{Attributes: s.attrs, StartTime: s.start, Time: now,
			Count: n, Bounds: sizeBuckets, BucketCounts: counts, Sum: s.reqSize.sum.Load()}
		counts, n = loadCounts(s.resSize.buckets)
		resSize[i] = metricdata.HistogramDataPoint[int64]{Attributes: s.attrs, StartTime: s.start, Time: now,
			Count: n, Bounds: sizeBuckets, BucketCounts: counts, Sum: s.resSize.sum.Load()}
	}
	cum := metricdata.CumulativeTemporality
	return []metricdata.Metrics{
		{Name: MetricRequests, Description: "Requests, as Istio counts them.", Data: metricdata.Sum[int64]{DataPoints: total, Temporality: cum, IsMonotonic: true}},
		{Name: MetricRequestDuration, Description: "Request duration, as Istio measures it.", Unit: "ms", Data: metricdata.Histogram[float64]{DataPoints: dur, Temporality: cum}},
		{Name: MetricRequestBytes, Description: "Request body sizes.", Unit: "By", Data: metricdata.Histogram[int64]{DataPoints: reqSize, Temporality: cum}},
		{Name: MetricResponseBytes, Description: "Response body sizes.", Unit: "By", Data: metricdata.Histogram[int64]{DataPoints: resSize, Temporality: cum}},
	}
}
