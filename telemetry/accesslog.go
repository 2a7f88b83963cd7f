package telemetry

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
)

// The access log's record: message "access", level Info, and these
// fields, as Envoy's default access-log format names them where it has a
// name for them.
const accessLogMessage = "access"

// log writes the request's access-log record.
func (r *Request) log(status int, code codes.Code, now time.Time) {
	direction, sent, received := "outbound", r.reqBytes.Load(), r.resBytes.Load()
	if r.server {
		direction, sent, received = "inbound", received, sent
	}
	attrs := make([]slog.Attr, 0, 20)
	attrs = append(attrs,
		slog.Time("start_time", r.start),
		slog.String("direction", direction),
		slog.String("protocol", r.proto.String()),
		slog.String("method", r.method),
		slog.String("path", r.path),
		slog.String("authority", r.host),
		slog.Int("response_code", status),
	)
	if r.proto == GRPC {
		attrs = append(attrs, slog.String("grpc_status", code.String()))
	}
	attrs = append(attrs,
		slog.String("response_flags", r.flags.String()),
		slog.Float64("duration_ms", float64(now.Sub(r.start))/float64(time.Millisecond)),
		slog.Int64("bytes_received", received),
		slog.Int64("bytes_sent", sent),
	)
	if r.server {
		attrs = append(attrs, slog.String("downstream_peer", r.peer.Principal))
	} else {
		attrs = append(attrs,
			slog.String("upstream_host", r.endpoint),
			slog.String("upstream_cluster", r.cluster),
			slog.String("route_name", r.route),
		)
	}
	if sc := trace.SpanContextFromContext(r.ctx); sc.IsValid() {
		attrs = append(attrs, slog.String("trace_id", sc.TraceID().String()), slog.String("span_id", sc.SpanID().String()))
	}
	if r.reason != "" {
		attrs = append(attrs, slog.String("reason", r.reason))
	}
	r.rec.t.accessLog.LogAttrs(r.ctx, slog.LevelInfo, accessLogMessage, attrs...)
}
