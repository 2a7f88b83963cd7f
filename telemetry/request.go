package telemetry

import (
	"context"
	"crypto/x509"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
)

// Protocol is a request's protocol, Istio's request_protocol.
type Protocol uint8

// The protocols of requests.
const (
	HTTP Protocol = iota
	GRPC
)

func (p Protocol) String() string {
	if p == GRPC {
		return "grpc"
	}
	return "http"
}

// Recorder records the requests of one workload: the mesh adapters call
// it. A nil *Recorder records nothing; its methods, and those of the nil
// *Request it starts, do nothing. It is safe for concurrent use.
type Recorder struct {
	t          *Telemetry
	local      Workload
	localHost  string // the workload's own service host, the destination of what it serves
	peerHeader string // HeaderPeer's value for the requests it sends
	labels     labelCache
	policy     policyCache
}

// Recorder returns the recorder of a workload, local, whose service host
// (name.namespace.svc.cluster.local) is host. It is nil when t is nil or
// records nothing.
func (t *Telemetry) Recorder(local Workload, host string) *Recorder {
	if t == nil || (t.tracer == nil && t.agg == nil && t.accessLog == nil) {
		return nil
	}
	return &Recorder{t: t, local: local, localHost: host, peerHeader: local.encode()}
}

// Request is one request's telemetry: its span, its metrics' labels and
// its access-log record. The adapter that started it calls its methods
// from one goroutine at a time, and End once; after End it must not be
// used. A nil *Request does nothing.
type Request struct {
	rec   *Recorder
	ctx   context.Context
	span  trace.Span // nil when not traced
	start time.Time

	server   bool
	proto    Protocol
	mtls     bool
	method   string
	path     string
	host     string // the destination service's host, without the port
	route    string
	cluster  string
	subset   string
	endpoint string
	peer     Workload
	attempts int
	flags    Flags
	reason   string
	reqBytes atomic.Int64 // a stream's messages may be counted on two goroutines
	resBytes atomic.Int64
	ended    atomic.Bool
}

// StartClient starts the record of a request this workload sends to the
// service of the client Listener name (host:port), with method and path
// (gRPC: POST and the full method name). Its span is a child of ctx's.
func (rc *Recorder) StartClient(ctx context.Context, proto Protocol, method, path, name string) *Request {
	if rc == nil {
		return nil
	}
	host, _, _ := strings.Cut(name, ":") // service hosts are never IPv6 literals
	r := &Request{rec: rc, ctx: ctx, start: time.Now(), proto: proto, method: method, path: path, host: host, peer: Workload{Name: host}}
	if tr := rc.t.tracer; tr != nil {
		r.ctx, r.span = tr.Start(ctx, spanName(proto, method, path), trace.WithSpanKind(trace.SpanKindClient))
	}
	return r
}

// StartServer starts the record of a request this workload serves. The
// trace context and the caller's workload (HeaderPeer) come from carrier,
// the request's headers or metadata; the caller's principal from its
// certificate chain, nil for plaintext.
func (rc *Recorder) StartServer(ctx context.Context, proto Protocol, method, path string, carrier propagation.TextMapCarrier, peerCerts []*x509.Certificate) *Request {
	if rc == nil {
		return nil
	}
	r := &Request{rec: rc, ctx: ctx, start: time.Now(), server: true, proto: proto, method: method, path: path, host: rc.localHost, mtls: len(peerCerts) > 0}
	if v := carrier.Get(HeaderPeer); v != "" {
		r.peer = decodePeer(v)
	}
	if id, ns := principalOf(peerCerts); id != "" {
		r.peer.Principal, r.peer.Namespace = id, ns // proven: wins over the header
	}
	if tr := rc.t.tracer; tr != nil {
		ctx = rc.t.propagator.Extract(ctx, carrier)
		r.ctx, r.span = tr.Start(ctx, spanName(proto, method, path), trace.WithSpanKind(trace.SpanKindServer))
	}
	return r
}

// spanName is OTel's: "GET /path" over HTTP, "package.Service/Method"
// over gRPC.
func spanName(p Protocol, method, path string) string {
	if p == GRPC {
		return strings.TrimPrefix(path, "/")
	}
	path, _, _ = strings.Cut(path, "?")
	return method + " " + path
}

// Context returns the request's context: the one it was started with,
// carrying its span when it is traced. The handler of a served request
// runs under it, so that the requests it sends join the trace.
func (r *Request) Context() context.Context {
	return r.ctx
}

// Traced reports whether the request has a span.
func (r *Request) Traced() bool { return r != nil && r.span != nil }

// Inject writes the request's trace context, and this workload for the
// server's labels (HeaderPeer), into carrier: the outgoing headers or
// metadata.
func (r *Request) Inject(carrier propagation.TextMapCarrier) {
	if r == nil {
		return
	}
	carrier.Set(HeaderPeer, r.rec.peerHeader)
	if r.span != nil {
		r.rec.t.propagator.Inject(r.ctx, carrier)
	}
}

// Route records the route the request matched and the cluster it goes
// to (outbound|port|subset|host).
func (r *Request) Route(route, cluster string) {
	if r == nil {
		return
	}
	r.route, r.cluster = route, cluster
	r.subset = clusterSubset(cluster)
}

// clusterSubset is the subset of a cluster named
// outbound|port|subset|host, as wire.ParseClusterName reads it, without
// its allocation: this runs on every request.
func clusterSubset(cluster string) string {
	rest, ok := strings.CutPrefix(cluster, "outbound|")
	if !ok {
		return ""
	}
	port, rest, ok := strings.Cut(rest, "|")
	if !ok || port == "" {
		return ""
	}
	subset, host, ok := strings.Cut(rest, "|")
	if !ok || host == "" || strings.Contains(host, "|") {
		return ""
	}
	return subset
}

// Attempt records that an attempt of the request goes to endpoint
// (ip:port). Attempts after the first are retries: they are counted, and
// each attempt is an event on the request's span ("attempt", with its
// number and endpoint) rather than a child span, so that one request is
// one client span as in Envoy, and the server spans of all its attempts
// hang off it.
func (r *Request) Attempt(endpoint string) {
	if r == nil {
		return
	}
	r.attempts++
	r.endpoint = endpoint
	if r.attempts > 1 {
		r.policyCount(policyRetry, "")
	}
	if r.span != nil && r.span.IsRecording() {
		r.span.AddEvent("attempt", trace.WithAttributes(attribute.Int("meshlet.attempt", r.attempts-1), attribute.String("meshlet.endpoint", endpoint)))
	}
}

// Flag records response flags, and a reason when the mesh refused or
// answered the request itself (logged, and put on the span). Policy
// flags are counted in meshlet's policy metrics.
func (r *Request) Flag(f Flags, reason string) {
	if r == nil {
		return
	}
	added := f &^ r.flags
	r.flags |= f
	if reason != "" {
		r.reason = reason
	}
	if added&FlagRateLimited != 0 {
		r.policyCount(policyRateLimited, "")
	}
	if added&FlagUpstreamOverflow != 0 {
		r.policyCount(policyCircuitOpen, "")
	}
	if added&FlagFaultAbort != 0 {
		r.policyCount(policyFault, "abort")
	}
	if added&FlagFaultDelay != 0 {
		r.policyCount(policyFault, "delay")
	}
	if added&FlagNoHealthyUpstream != 0 {
		r.policyCount(policyNoUpstream, "")
	}
}

// Denied records that AuthorizationPolicy refused the request, and why.
// Envoy has no response flag for it: the 403 (PermissionDenied) says it.
func (r *Request) Denied(reason string) {
	if r == nil {
		return
	}
	r.reason = reason
	r.policyCount(policyDenied, "")
}

// Refused reports whether the mesh refused or answered the request.
func (r *Request) Refused() bool { return r != nil && r.reason != "" }

// AddBytes counts body bytes of the request (sent by a client, received
// by a server) and of the response.
func (r *Request) AddBytes(request, response int64) {
	if r == nil {
		return
	}
	if request != 0 {
		r.reqBytes.Add(request)
	}
	if response != 0 {
		r.resBytes.Add(response)
	}
}

// End ends the request with its HTTP status (gRPC: 200, as Envoy
// reports gRPC responses, whatever their gRPC status) and, for gRPC,
// its status code. It records the metrics, ends the span and writes the
// access log. Only the first call counts.
func (r *Request) End(status int, code codes.Code) {
	if r == nil || r.ended.Swap(true) {
		return
	}
	now := time.Now()
	t := r.rec.t
	grpcCode := int32(-1)
	if r.proto == GRPC {
		grpcCode = int32(code)
	}
	if a := t.agg; a != nil {
		k := labelKey{server: r.server, proto: r.proto, mtls: r.mtls, flags: r.flags, code: status, grpcCode: grpcCode, route: r.route, host: r.host, subset: r.subset, peer: r.peer}
		s := r.rec.labels.get(a, &k, &r.rec.local)
		s.record(float64(now.Sub(r.start))/float64(time.Millisecond), r.reqBytes.Load(), r.resBytes.Load())
	}
	if r.span != nil {
		r.endSpan(status, code, now)
	}
	if t.accessLog != nil {
		r.log(status, code, now)
	}
}

// endSpan puts the mesh's attributes on the span and ends it.
func (r *Request) endSpan(status int, code codes.Code, now time.Time) {
	s := r.span
	if s.IsRecording() {
		src, dst := &r.rec.local, &r.peer
		if r.server {
			src, dst = &r.peer, &r.rec.local
		}
		attrs := []attribute.KeyValue{
			attribute.String("meshlet.source.service", src.Name),
			attribute.String("meshlet.source.namespace", src.Namespace),
			attribute.String("meshlet.source.version", src.Version),
			attribute.String("meshlet.destination.service", r.host),
			attribute.String("meshlet.destination.version", dst.Version),
			attribute.String("meshlet.response_flags", r.flags.String()),
		}
		if r.subset != "" {
			attrs = append(attrs, attribute.String("meshlet.destination.subset", r.subset))
		}
		if r.route != "" || r.cluster != "" {
			attrs = append(attrs, attribute.String("meshlet.route", r.route), attribute.String("meshlet.cluster", r.cluster))
		}
		if r.endpoint != "" {
			attrs = append(attrs, attribute.String("meshlet.endpoint", r.endpoint), attribute.String("network.peer.address", r.endpoint))
		}
		if r.attempts > 1 {
			attrs = append(attrs, attribute.Int("meshlet.retries", r.attempts-1))
		}
		if r.reason != "" {
			attrs = append(attrs, attribute.String("meshlet.refused", r.reason))
		}
		if r.proto == GRPC {
			svc, method, _ := strings.Cut(strings.TrimPrefix(r.path, "/"), "/")
			attrs = append(attrs, attribute.String("rpc.system", "grpc"), attribute.String("rpc.service", svc), attribute.String("rpc.method", method), attribute.Int("rpc.grpc.status_code", int(code)))
		} else {
			path, _, _ := strings.Cut(r.path, "?")
			attrs = append(attrs, attribute.String("http.request.method", r.method), attribute.String("url.path", path), attribute.Int("http.response.status_code", status))
		}
		s.SetAttributes(attrs...)
		if r.failed(status, code) {
			s.SetStatus(otelcodes.Error, r.reason)
		}
	}
	s.End(trace.WithTimestamp(now))
}

// failed is whether the span's status is an error, as OTel's semantic
// conventions say: for a server, 5xx or a server-fault gRPC code; for a
// client, any 4xx/5xx or non-OK code, or no response.
func (r *Request) failed(status int, code codes.Code) bool {
	if r.proto == GRPC {
		if !r.server {
			return code != codes.OK
		}
		switch code {
		case codes.Unknown, codes.DeadlineExceeded, codes.Unimplemented, codes.Internal, codes.Unavailable, codes.DataLoss:
			return true
		}
		return false
	}
	if r.server {
		return status >= 500
	}
	return status == 0 || status >= 400
}

// policy metrics: which counter, and the labels it is counted with.
const (
	policyRetry = iota
	policyRateLimited
	policyCircuitOpen
	policyFault
	policyDenied
	policyNoUpstream
)

type policyKey struct {
	metric  uint8
	server  bool
	kind    string
	host    string
	cluster string
}

// policyMetrics is the number of policy metrics.
const policyMetrics = policyNoUpstream + 1

type policyCache struct {
	mu   sync.RWMutex
	sets map[policyKey]*counterSeries
}

func (r *Request) policyCount(which uint8, kind string) {
	a := r.rec.t.agg
	if a == nil {
		return
	}
	k := policyKey{metric: which, server: r.server, kind: kind, host: r.host, cluster: r.cluster}
	c := &r.rec.policy
	c.mu.RLock()
	s := c.sets[k]
	c.mu.RUnlock()
	if s == nil {
		reporter := "source"
		if r.server {
			reporter = "destination"
		}
		kv := []attribute.KeyValue{attribute.String("reporter", reporter), attribute.String("destination_service", orUnknown(r.host))}
		if r.cluster != "" {
			kv = append(kv, attribute.String("cluster", r.cluster))
		}
		if kind != "" {
			kv = append(kv, attribute.String("kind", kind))
		}
		s = a.counter(which, attribute.NewSet(kv...))
		c.mu.Lock()
		if c.sets == nil {
			c.sets = map[policyKey]*counterSeries{}
		}
		if len(c.sets) < maxLabelSets {
			c.sets[k] = s
		}
		c.mu.Unlock()
	}
	s.n.Add(1)
}
