package mesh

import (
	"sync"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/xdspath"
)

// xdsTelemetry is gRPC-Go's OpenTelemetry plugin for the mesh's gRPC-Go
// xDS path, recording into the mesh's telemetry, made once: its options
// create gRPC's instruments, which every ClientConn and server then
// share.
type xdsTelemetry struct {
	once   sync.Once
	dial   grpc.DialOption
	server grpc.ServerOption
}

// xdsTelemetryOptions returns the plugin's dial and server options; nil
// without WithTelemetry, or when the telemetry neither keeps metrics in
// a reader nor traces.
func (m *Mesh) xdsTelemetryOptions(p *xdspath.Path) (grpc.DialOption, grpc.ServerOption) {
	t := m.opts.telemetry
	if t == nil || p.Telemetry == nil {
		return nil, nil
	}
	m.xdsTel.once.Do(func() {
		cfg := xdspath.Telemetry{MeterProvider: t.MeterProvider(), TracerProvider: t.TracerProvider(), Propagator: t.Propagator()}
		if cfg.MeterProvider == nil && cfg.TracerProvider == nil {
			return
		}
		m.xdsTel.dial, m.xdsTel.server = p.Telemetry(cfg)
	})
	return m.xdsTel.dial, m.xdsTel.server
}
