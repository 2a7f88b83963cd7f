package telemetry

import (
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Past maxSeries label sets, requests count in one overflow series,
// labelled as the OTel SDK labels its own, and the series already made
// keep counting.
func TestAggregatorOverflow(t *testing.T) {
	a := newAggregator()
	set := func(i int) attribute.Set { return attribute.NewSet(attribute.String("route", fmt.Sprint(i))) }
	for i := range maxSeries {
		a.requestSeries(set(i)).record(1, 0, 0)
	}
	a.requestSeries(set(maxSeries)).record(1, 0, 0)
	a.requestSeries(set(maxSeries+1)).record(1, 0, 0)
	a.requestSeries(set(0)).record(1, 0, 0)
	for range 3 {
		a.counter(policyRetry, set(0)).n.Add(1)
	}
	sms, err := a.Produce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	points := map[string]int64{}
	for _, m := range sms[0].Metrics {
		if s, ok := m.Data.(metricdata.Sum[int64]); ok {
			for _, dp := range s.DataPoints {
				points[m.Name+" "+dp.Attributes.Encoded(attribute.DefaultEncoder())] = dp.Value
			}
		}
	}
	if got := len(points); got != maxSeries+2 {
		t.Errorf("%d points, want %d series, the overflow and the retries'", got, maxSeries+2)
	}
	for key, want := range map[string]int64{
		MetricRequests + " otel.metric.overflow=true": 2,
		MetricRequests + " route=0":                   2,
		MetricRequests + " route=7":                   1,
		MetricRetries + " route=0":                    3,
	} {
		if points[key] != want {
			t.Errorf("%s: %d, want %d", key, points[key], want)
		}
	}
}

// A Recorder whose cache is full counts new label sets in the overflow
// series rather than building their attributes on every request.
func TestLabelCacheFull(t *testing.T) {
	a := newAggregator()
	var c labelCache
	local := Workload{Name: "productpage"}
	for i := range maxLabelSets {
		c.get(a, &labelKey{route: fmt.Sprint(i)}, &local)
	}
	if s := c.get(a, &labelKey{route: "new"}, &local); s.attrs.Equivalent() != overflowAttrs.Equivalent() {
		t.Errorf("a new label set past the cache's bound got %v, want the overflow series", s.attrs)
	}
	if s := c.get(a, &labelKey{route: "3"}, &local); s.attrs.Equivalent() == overflowAttrs.Equivalent() {
		t.Errorf("a cached label set got the overflow series")
	}
}
