package telemetry

import (
	"context"
	"fmt"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/otlptranslator"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"
)

// Istio's standard metric names. They are written here exactly as
// Prometheus shows them: the exporter adds no suffix.
const (
	MetricRequests        = "istio_requests_total"
	MetricRequestDuration = "istio_request_duration_milliseconds"
	MetricRequestBytes    = "istio_request_bytes"
	MetricResponseBytes   = "istio_response_bytes"
	// meshlet's policy metrics, which Istio has as Envoy stats.
	MetricRetries            = "meshlet_retries_total"
	MetricRateLimited        = "meshlet_rate_limited_total"
	MetricCircuitOpen        = "meshlet_circuit_open_total"
	MetricFaultsInjected     = "meshlet_faults_injected_total"
	MetricAuthorizationDeny  = "meshlet_authorization_denied_total"
	MetricNoHealthyUpstreams = "meshlet_no_healthy_upstream_total"
)

// durationBuckets are Istio's buckets for istio_request_duration_milliseconds.
var durationBuckets = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// sizeBuckets are Istio's buckets for the byte histograms (powers of 10
// from 1 to 10^8).
var sizeBuckets = []float64{1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000}

// sdkMeterProvider is the SDK MeterProvider whose readers
// OTEL_METRICS_EXPORTER asks for, each reading the aggregator too; nil
// when it asks for none.
func (t *Telemetry) sdkMeterProvider(ctx context.Context, o *options, res *resource.Resource) (*sdkmetric.MeterProvider, error) {
	prom, push, err := o.metricsExporters(ctx, t.agg)
	if err != nil {
		return nil, err
	}
	var readers []sdkmetric.Option
	if prom {
		reg := prometheus.NewRegistry()
		exp, err := otelprom.New(
			otelprom.WithRegisterer(reg),
			otelprom.WithProducer(t.agg),
			// Istio's names exactly: no unit or _total suffix added, no
			// otel_scope_* labels, no target_info series.
			otelprom.WithTranslationStrategy(otlptranslator.UnderscoreEscapingWithoutSuffixes),
			otelprom.WithoutScopeInfo(),
			otelprom.WithoutTargetInfo(),
		)
		if err != nil {
			return nil, fmt.Errorf("telemetry: prometheus exporter: %w", err)
		}
		readers = append(readers, sdkmetric.WithReader(exp))
		t.promHTTP = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	for _, r := range push {
		readers = append(readers, sdkmetric.WithReader(r))
	}
	if len(readers) == 0 {
		return nil, nil
	}
	// The MeterProvider's own instruments are other libraries' (gRPC-Go's
	// on its xDS path, through MeterProvider); meshlet's metrics come from
	// the aggregator.
	mp := sdkmetric.NewMeterProvider(append(readers, sdkmetric.WithResource(res))...)
	t.shutdown = append(t.shutdown, mp.Shutdown)
	return mp, nil
}

// labelKey is what a request's Istio labels are made of. Requests with
// the same key share one attribute set, built once.
type labelKey struct {
	server   bool
	proto    Protocol
	mtls     bool
	flags    Flags
	code     int
	grpcCode int32 // -1: not gRPC
	route    string
	host     string // the destination service's host
	subset   string
	peer     Workload
}

// labelCache maps a Recorder's label keys to their series. Its map is
// read under a read lock, keyed by a struct, so that a hit allocates
// nothing and builds no attribute set.
type labelCache struct {
	mu   sync.RWMutex
	sets map[labelKey]*requestSeries
}

// maxLabelSets bounds a Recorder's cache: past it, requests of new label
// sets count in the overflow series (a label of unbounded values would
// be a bug anyway).
const maxLabelSets = 4096

func (c *labelCache) get(a *aggregator, k *labelKey, local *Workload) *requestSeries {
	c.mu.RLock()
	s := c.sets[*k]
	n := len(c.sets)
	c.mu.RUnlock()
	if s != nil {
		return s
	}
	if n >= maxLabelSets {
		return a.requestOverflow()
	}
	s = a.requestSeries(attribute.NewSet(istioLabels(k, local)...))
	c.mu.Lock()
	if c.sets == nil {
		c.sets = map[labelKey]*requestSeries{}
	}
	if len(c.sets) < maxLabelSets {
		c.sets[*k] = s
	}
	c.mu.Unlock()
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// istioLabels are Istio's standard labels of a request, plus route.
func istioLabels(k *labelKey, local *Workload) []attribute.KeyValue {
	src, dst := local, &k.peer
	reporter := "source"
	if k.server {
		src, dst, reporter = &k.peer, local, "destination"
	}
	svcName, svcNS := splitServiceHost(k.host)
	dstVersion := dst.Version
	if !k.server && dstVersion == "" {
		dstVersion = k.subset // a client knows its destination's version by the subset it routed to
	}
	proto := "http"
	if k.proto == GRPC {
		proto = "grpc"
	}
	grpcStatus := ""
	if k.grpcCode >= 0 {
		grpcStatus = strconv.Itoa(int(k.grpcCode))
	}
	security := "unknown" // Istio's source reporter does not say
	if k.server {
		security = "none"
		if k.mtls {
			security = "mutual_tls"
		}
	}
	dstWorkload, dstApp := dst.Name, dst.App
	if !k.server {
		// meshlet's workloads are named after their service.
		dstWorkload, dstApp = svcName, svcName
	}
	return []attribute.KeyValue{
		attribute.String("reporter", reporter),
		attribute.String("source_workload", orUnknown(src.Name)),
		attribute.String("source_workload_namespace", orUnknown(src.Namespace)),
		attribute.String("source_principal", orUnknown(src.Principal)),
		attribute.String("source_app", orUnknown(src.App)),
		attribute.String("source_version", orUnknown(src.Version)),
		attribute.String("destination_workload", orUnknown(dstWorkload)),
		attribute.String("destination_workload_namespace", orUnknown(svcNS)),
		attribute.String("destination_principal", orUnknown(dst.Principal)),
		attribute.String("destination_app", orUnknown(dstApp)),
		attribute.String("destination_version", orUnknown(dstVersion)),
		attribute.String("destination_service", orUnknown(k.host)),
		attribute.String("destination_service_name", orUnknown(svcName)),
		attribute.String("destination_service_namespace", orUnknown(svcNS)),
		attribute.String("destination_cluster", "Kubernetes"), // Istio's value for a single-cluster mesh
		attribute.String("source_cluster", "Kubernetes"),
		attribute.String("request_protocol", proto),
		attribute.String("response_code", strconv.Itoa(k.code)),
		attribute.String("grpc_response_status", grpcStatus),
		attribute.String("response_flags", k.flags.String()),
		attribute.String("connection_security_policy", security),
		attribute.String("route", k.route),
	}
}
