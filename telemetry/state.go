package telemetry

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// meshlet's state metrics, read from the meshes at each collection.
const (
	MetricXDSConnected        = "meshlet_xds_connected"
	MetricXDSReconnects       = "meshlet_xds_reconnects_total"
	MetricXDSUpdates          = "meshlet_xds_updates_total"
	MetricXDSNACKs            = "meshlet_xds_nacks_total"
	MetricOutlierEjections    = "meshlet_outlier_ejections_total"
	MetricCircuitBreakerOpens = "meshlet_circuit_breaker_opens_total"
	MetricCircuitBreakerState = "meshlet_circuit_breaker_state"
)

// MeshState is what a mesh reports at each collection of metrics, as
// plain values: its xDS client and the clusters it calls. The counts are
// cumulative.
type MeshState struct {
	// XDSConnected is whether the mesh's xDS stream to the control plane
	// is up.
	XDSConnected bool
	// XDSReconnects counts connections after the first.
	XDSReconnects uint64
	// XDSTypes are the counts of each resource type.
	XDSTypes []XDSTypeCounts
	// Clusters are the clusters called.
	Clusters []ClusterState
}

// XDSTypeCounts are the xDS client's counts of one resource type.
type XDSTypeCounts struct {
	// Type is the type's short name, such as "Cluster".
	Type string
	// Updates counts resources whose value changed; NACKs the responses
	// rejected.
	Updates, NACKs uint64
}

// ClusterState is one cluster's outlier detection and circuit breaker.
type ClusterState struct {
	// Name is the cluster's name, outbound|port|subset|host.
	Name string
	// Ejections counts outlier ejections; BreakerOpens the openings of
	// its circuit breaker.
	Ejections, BreakerOpens uint64
	// BreakerState is "closed", "open" or "half-open"; "" when the
	// cluster has no breaker.
	BreakerState string
}

// breakerStates are the values of meshlet_circuit_breaker_state's state
// label: each cluster with a breaker has one series of each, 1 for the
// state it is in, so that a query needs no absent().
var breakerStates = []string{"closed", "open", "half-open"}

// AddStateSource has f called at each collection of metrics, and its
// state exported as meshlet_xds_*, meshlet_outlier_ejections_total and
// meshlet_circuit_breaker_*; mesh.New with WithTelemetry adds its mesh's.
// The states of several sources are summed by label set. f must be
// cheap and must not block: it runs on every scrape. remove stops
// calling it. On a nil Telemetry, or one whose metrics are off, it does
// nothing.
func (t *Telemetry) AddStateSource(f func() MeshState) (remove func()) {
	if t == nil || t.agg == nil {
		return func() {}
	}
	return t.agg.states.add(f)
}

type stateSources struct {
	mu   sync.Mutex
	next uint64
	m    map[uint64]func() MeshState
}

func (s *stateSources) add(f func() MeshState) func() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = map[uint64]func() MeshState{}
	}
	s.next++
	id := s.next
	s.m[id] = f
	return func() {
		s.mu.Lock()
		delete(s.m, id)
		s.mu.Unlock()
	}
}

// points sums data points by label set, in first-seen order.
type points struct {
	idx map[attribute.Distinct]int
	pts []metricdata.DataPoint[int64]
}

func (p *points) add(attrs attribute.Set, v int64, start, now time.Time) {
	if i, ok := p.idx[attrs.Equivalent()]; ok {
		p.pts[i].Value += v
		return
	}
	if p.idx == nil {
		p.idx = map[attribute.Distinct]int{}
	}
	p.idx[attrs.Equivalent()] = len(p.pts)
	p.pts = append(p.pts, metricdata.DataPoint[int64]{Attributes: attrs, StartTime: start, Time: now, Value: v})
}

// metrics reads every source and returns the state metrics; none
// without a source.
func (s *stateSources) metrics(start, now time.Time) []metricdata.Metrics {
	s.mu.Lock()
	fns := make([]func() MeshState, 0, len(s.m))
	for _, f := range s.m {
		fns = append(fns, f)
	}
	s.mu.Unlock()
	if len(fns) == 0 {
		return nil
	}
	var connected, reconnects, updates, nacks, ejections, opens, state points
	none := attribute.NewSet()
	for _, f := range fns {
		st := f()
		up := int64(0)
		if st.XDSConnected {
			up = 1
		}
		connected.add(none, up, start, now)
		reconnects.add(none, int64(st.XDSReconnects), start, now)
		for _, ty := range st.XDSTypes {
			attrs := attribute.NewSet(attribute.String("type", ty.Type))
			updates.add(attrs, int64(ty.Updates), start, now)
			nacks.add(attrs, int64(ty.NACKs), start, now)
		}
		for _, c := range st.Clusters {
			attrs := attribute.NewSet(attribute.String("cluster", c.Name))
			ejections.add(attrs, int64(c.Ejections), start, now)
			if c.BreakerState == "" {
				continue
			}
			opens.add(attrs, int64(c.BreakerOpens), start, now)
			for _, bs := range breakerStates {
				v := int64(0)
				if bs == c.BreakerState {
					v = 1
				}
				state.add(attribute.NewSet(attribute.String("cluster", c.Name), attribute.String("state", bs)), v, start, now)
			}
		}
	}
	counter := func(name, desc string, p points) metricdata.Metrics {
		return metricdata.Metrics{Name: name, Description: desc, Data: metricdata.Sum[int64]{DataPoints: p.pts, Temporality: metricdata.CumulativeTemporality, IsMonotonic: true}}
	}
	gauge := func(name, desc string, p points) metricdata.Metrics {
		return metricdata.Metrics{Name: name, Description: desc, Data: metricdata.Gauge[int64]{DataPoints: p.pts}}
	}
	out := []metricdata.Metrics{
		gauge(MetricXDSConnected, "Whether the xDS stream to the control plane is up (1) or not (0); summed over the meshes of the process.", connected),
		counter(MetricXDSReconnects, "Connections to the control plane after the first.", reconnects),
	}
	for _, m := range []struct {
		name, desc string
		p          points
		gauge      bool
	}{
		{MetricXDSUpdates, "xDS resources whose value changed, by type.", updates, false},
		{MetricXDSNACKs, "xDS responses rejected (NACKed), by type.", nacks, false},
		{MetricOutlierEjections, "Endpoints ejected by outlier detection, by cluster.", ejections, false},
		{MetricCircuitBreakerOpens, "Openings of a cluster's circuit breaker.", opens, false},
		{MetricCircuitBreakerState, "A cluster's circuit breaker state: 1 for the state it is in (closed, open, half-open).", state, true},
	} {
		if len(m.p.pts) == 0 {
			continue
		}
		if m.gauge {
			out = append(out, gauge(m.name, m.desc, m.p))
		} else {
			out = append(out, counter(m.name, m.desc, m.p))
		}
	}
	return out
}
