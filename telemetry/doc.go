// Package telemetry is meshlet's request telemetry: OpenTelemetry
// tracing, Istio's standard metrics, and access logs, for every request
// a mesh's clients send and its servers serve, over HTTP and gRPC.
//
// Make one Telemetry per process and give it to each mesh:
//
//	tel, err := telemetry.New(ctx)
//	...
//	defer tel.Shutdown(ctx)
//	m, err := mesh.New(ctx, mesh.WithService("reviews"), mesh.WithTelemetry(tel))
//	http.Handle("/metrics", tel.MetricsHandler())
//
// Without WithTelemetry a mesh records nothing and pays nothing.
//
// # Configuration
//
// Options win; what they leave open comes from the standard OTEL_*
// environment variables:
//
//   - OTEL_TRACES_EXPORTER: otlp, console or none (default none: no SDK
//     tracer at all, and tracing costs nothing).
//   - OTEL_EXPORTER_OTLP_PROTOCOL, OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
//     OTEL_EXPORTER_OTLP_METRICS_PROTOCOL: grpc or http/protobuf (default
//     http/protobuf). Endpoints, headers and TLS: the exporters' own
//     OTEL_EXPORTER_OTLP_* variables.
//   - OTEL_TRACES_SAMPLER and OTEL_TRACES_SAMPLER_ARG (default
//     parentbased_traceidratio at 0.01, Istio's 1%: a request whose
//     caller sampled it is always traced).
//   - OTEL_METRICS_EXPORTER: prometheus (the default: MetricsHandler),
//     otlp (adds a periodic OTLP push), none, or a comma-separated list.
//   - OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES: the resource.
//   - OTEL_SDK_DISABLED=true turns it all off.
//
// An unsupported value is an error from New that names the variable.
//
// # Propagation
//
// W3C trace context and baggage (or WithPropagator's), in HTTP headers
// and gRPC metadata: injected by clients, extracted by servers. The
// client also sends its workload in the x-meshlet-peer header, as Istio's
// metadata exchange does, for the server's source_* labels; the
// principal is taken only from the client's certificate.
//
// # Metrics
//
// The metric names and labels are Istio's, so that Istio's Grafana
// dashboards and Kiali work unchanged: istio_requests_total,
// istio_request_duration_milliseconds (Istio's buckets),
// istio_request_bytes and istio_response_bytes, with reporter (source or
// destination), source_* and destination_* workload, namespace,
// principal, app and version, destination_service(_name|_namespace),
// request_protocol, response_code, grpc_response_status, response_flags
// (Envoy's: UH, UF, UO, NR, UT, URX, DC, RL, FI, DI, or "-") and
// connection_security_policy. meshlet adds one label, route (the route's
// name; empty on the destination side): dashboards aggregate with sum by
// (...), so an extra label changes none of their queries. The Prometheus
// exporter is set to add no suffix and no scope labels, so the names in
// MetricsHandler's text are exactly these. Policy metrics:
// meshlet_retries_total, meshlet_rate_limited_total,
// meshlet_circuit_open_total, meshlet_faults_injected_total,
// meshlet_authorization_denied_total and
// meshlet_no_healthy_upstream_total. State metrics, read from each mesh
// when metrics are collected (AddStateSource; mesh.New adds its mesh's):
// meshlet_xds_connected, meshlet_xds_reconnects_total,
// meshlet_xds_updates_total{type}, meshlet_xds_nacks_total{type},
// meshlet_outlier_ejections_total{cluster},
// meshlet_circuit_breaker_opens_total{cluster} and
// meshlet_circuit_breaker_state{cluster,state}.
//
// meshlet aggregates these itself, in atomics per label set, and hands
// them to the OTel SDK's readers as an sdkmetric.Producer when they
// collect: recording them through OTel instruments would cost about ten
// times more a request (docs/telemetry.md). A pipeline of the caller's
// own attaches MetricProducer to its reader (with
// OTEL_METRICS_EXPORTER=none). MeterProvider is the SDK provider of the
// readers New built, for libraries that record through instruments:
// mesh gives it, with TracerProvider and Propagator, to gRPC-Go's own
// OpenTelemetry plugin on its xDS path (mesh.WithGRPCGoXDS,
// mesh.WithXDSServer), whose metrics have gRPC's names
// (grpc_client_attempt_*, grpc_server_call_*, grpc_xds_client_*).
//
// # Spans
//
// A client span (kind client, named "GET /path" or
// "package.Service/Method") per request sent, with one "attempt" event
// per attempt, and a server span (kind server, child of the caller's)
// per request served, with the mesh's attributes: meshlet.source.*,
// meshlet.destination.*, meshlet.route, meshlet.cluster,
// meshlet.endpoint, meshlet.retries, meshlet.response_flags and
// meshlet.refused (why the mesh refused or answered a request).
//
// # Access log
//
// WithAccessLog writes one slog record, "access", per request, client
// and server side; see docs/telemetry.md for its fields.
package telemetry
