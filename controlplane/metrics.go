package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdkresource "go.opentelemetry.io/otel/sdk/resource"

	"github.com/meshlet/meshlet/controlplane/internal/debounce"
	"github.com/meshlet/meshlet/controlplane/internal/xdsserver"
)

// MetricsPrefix begins the name of every control-plane metric on /metrics.
const MetricsPrefix = "meshlet_controlplane_"

// The causes of a push, the cause label of the push-latency histogram.
const (
	causeStart    = "start"    // the first build, at Start
	causeConfig   = "config"   // a config file changed
	causeRegistry = "registry" // an instance registered, changed state or left
	causeInbound  = "inbound"  // a server asked for its server Listeners
	causeWarmup   = "warmup"   // a restart's warm-up began or ended
)

// pushLatencyBuckets are in seconds: a push is ACKed in about a
// millisecond on loopback, and a config edit waits for the debounce.
var pushLatencyBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// metrics are the control plane's OpenTelemetry instruments, exported to
// a Prometheus registry of its own (never the global one, so that two
// control planes in one process, as in tests, do not collide).
type metrics struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider

	pushes       metric.Int64Counter
	nacks        metric.Int64Counter
	pushLatency  metric.Float64Histogram
	configErrors metric.Int64Counter
	reloads      metric.Int64Counter
	refused      metric.Int64Counter
	debounceWait metric.Float64Histogram
	coalesced    metric.Int64Histogram

	mu    sync.Mutex
	attrs map[string]metric.MeasurementOption // by "key=value", built once
}

func newMetrics(s *Server) (*metrics, error) {
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	exp, err := otelprom.New(otelprom.WithRegisterer(reg), otelprom.WithoutScopeInfo())
	if err != nil {
		return nil, err
	}
	m := &metrics{registry: reg, provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp),
		// target_info names the control plane, not "unknown_service".
		sdkmetric.WithResource(sdkresource.NewSchemaless(attribute.String("service.name", "meshlet-controlplane")))), attrs: map[string]metric.MeasurementOption{}}
	meter := m.provider.Meter("github.com/meshlet/meshlet/controlplane")
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := meter.Int64Counter(MetricsPrefix+name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	m.pushes = counter("xds_pushes", "xDS responses sent to clients, by type.")
	m.nacks = counter("xds_nacks", "xDS responses clients rejected (NACKs), by type.")
	m.configErrors = counter("config_errors", "Problems found in refused config loads, one per field error.")
	m.reloads = counter("config_reloads", "Config directory loads after a change, by result (ok or refused).")
	m.refused = counter("registrations_refused", "Registrations refused, by reason.")
	m.pushLatency, err = meter.Float64Histogram(MetricsPrefix+"xds_push_latency",
		metric.WithUnit("s"),
		metric.WithDescription("Time from a change's detection (config file write, registry change) to the ACK of its version by the last client that was sent it, by cause."),
		metric.WithExplicitBucketBoundaries(pushLatencyBuckets...))
	errs = append(errs, err)
	m.debounceWait, err = meter.Float64Histogram(MetricsPrefix+"config_debounce",
		metric.WithUnit("s"),
		metric.WithDescription("Time from the first config file change of a reload to the reload's start (WithDebounce)."),
		metric.WithExplicitBucketBoundaries(pushLatencyBuckets...))
	errs = append(errs, err)
	m.coalesced, err = meter.Int64Histogram(MetricsPrefix+"config_events_coalesced",
		metric.WithDescription("Config file events coalesced into one reload."),
		metric.WithExplicitBucketBoundaries(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
	errs = append(errs, err)

	clients, err := meter.Int64ObservableGauge(MetricsPrefix+"xds_clients",
		metric.WithDescription("Connected xDS streams, by kind of client (meshlet, grpc-go, grpc, other, unknown)."))
	errs = append(errs, err)
	instances, err := meter.Int64ObservableGauge(MetricsPrefix+"registry_instances",
		metric.WithDescription("Registered instances, by state (SERVING, NOT_SERVING, DRAINING)."))
	errs = append(errs, err)
	services, err := meter.Int64ObservableGauge(MetricsPrefix+"registry_services",
		metric.WithDescription("Service hosts the mesh knows, from ServiceEntries and registrations."))
	errs = append(errs, err)
	budget, err := meter.Int64ObservableGauge(MetricsPrefix+"xds_send_budget_bytes",
		metric.WithUnit("By"),
		metric.WithDescription("The bound on bytes of encoded xDS responses held until written (Limits.SendBytes, --max-send-bytes); 0 for none."))
	errs = append(errs, err)
	inFlight, err := meter.Int64ObservableGauge(MetricsPrefix+"xds_send_in_flight",
		metric.WithUnit("By"),
		metric.WithDescription("Bytes of encoded xDS responses held now, from encoding until the transport has written them."))
	errs = append(errs, err)
	waits, err := meter.Int64ObservableCounter(MetricsPrefix+"xds_send_waits",
		metric.WithDescription("xDS responses that waited for room under the send budget before they were encoded."))
	errs = append(errs, err)
	waitTime, err := meter.Float64ObservableCounter(MetricsPrefix+"xds_send_wait",
		metric.WithUnit("s"),
		metric.WithDescription("Time xDS responses waited for room under the send budget, summed."))
	errs = append(errs, err)
	timeouts, err := meter.Int64ObservableCounter(MetricsPrefix+"xds_send_timeouts",
		metric.WithDescription("xDS streams closed because a response was not written within the send timeout (--send-timeout)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	_, err = meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		fs := s.xds.FlowStats()
		o.ObserveInt64(budget, fs.Budget)
		o.ObserveInt64(inFlight, fs.InFlight)
		o.ObserveInt64(waits, fs.Waits)
		o.ObserveFloat64(waitTime, fs.WaitTime.Seconds())
		o.ObserveInt64(timeouts, fs.TimedOut)
		kinds := s.xds.ClientKinds()
		for _, k := range []string{"meshlet", "grpc-go", "grpc", "other", "unknown"} {
			o.ObserveInt64(clients, int64(kinds[k]), metric.WithAttributes(attribute.String("client", k)))
		}
		byState := map[string]int64{"SERVING": 0, "NOT_SERVING": 0, "DRAINING": 0}
		for _, e := range s.reg.Entries() {
			byState[e.State.String()]++
		}
		for st, n := range byState {
			o.ObserveInt64(instances, n, metric.WithAttributes(attribute.String("state", st)))
		}
		s.mu.Lock()
		n := len(s.services)
		s.mu.Unlock()
		o.ObserveInt64(services, int64(n))
		return nil
	}, clients, instances, services, budget, inFlight, waits, waitTime, timeouts)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// attr returns the measurement option of one attribute, built once: the
// hot paths (a push per client per change) allocate nothing for it.
func (m *metrics) attr(key, value string) metric.MeasurementOption {
	k := key + "=" + value
	m.mu.Lock()
	defer m.mu.Unlock()
	a, ok := m.attrs[k]
	if !ok {
		a = metric.WithAttributeSet(attribute.NewSet(attribute.String(key, value)))
		m.attrs[k] = a
	}
	return a
}

// observer feeds the xDS server's events to the instruments. Its funcs
// run under the xDS server's lock: OTel's synchronous instruments do not
// block.
func (m *metrics) observer() xdsserver.Observer {
	ctx := context.Background()
	return xdsserver.Observer{
		Pushed: func(typ string) { m.pushes.Add(ctx, 1, m.attr("type", typ)) },
		Nacked: func(typ string) { m.nacks.Add(ctx, 1, m.attr("type", typ)) },
		Synced: func(c xdsserver.Change, took time.Duration) {
			m.pushLatency.Record(ctx, took.Seconds(), m.attr("cause", c.Cause))
		},
	}
}

// reloaded counts a config load after a change: err is nil when it was put
// in force.
func (m *metrics) reloaded(err error) {
	ctx := context.Background()
	if err == nil {
		m.reloads.Add(ctx, 1, m.attr("result", "ok"))
		return
	}
	m.reloads.Add(ctx, 1, m.attr("result", "refused"))
	// A refusal the translation found, not the loader, has no field
	// errors: it is still one problem.
	m.configErrors.Add(ctx, int64(max(len(FieldErrors(err)), 1)))
}

// debounced records a reload's debounce: how long its first change
// waited, and how many changes it took in.
func (m *metrics) debounced(b debounce.Batch) {
	ctx := context.Background()
	m.debounceWait.Record(ctx, b.Wait.Seconds())
	m.coalesced.Record(ctx, int64(b.Events))
}

// registrationRefused counts a refused registration.
func (m *metrics) registrationRefused(reason string) {
	m.refused.Add(context.Background(), 1, m.attr("reason", reason))
}

// handler serves the registry in Prometheus's text format.
func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{ErrorLog: nil})
}

func (m *metrics) shutdown() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.provider.Shutdown(ctx); err != nil {
		return fmt.Errorf("controlplane: metrics: %w", err)
	}
	return nil
}
