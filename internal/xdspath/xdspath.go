// Package xdspath is where gRPC-Go's own xDS path plugs into package mesh.
// Linking google.golang.org/grpc/xds costs a program about 10 MiB of
// resident memory at initialisation, so mesh does not import it: package
// mesh/grpcxds does, and registers it here when a program imports it.
package xdspath

import (
	"net"

	"strconv"
	"sync"
	"sync/atomic"

	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/resolver"
)

// Path is gRPC-Go's xDS client and server, as mesh uses them.
type Path struct {
	// Resolver returns gRPC-Go's xds resolver for a bootstrap (JSON), or
	// for the environment's (GRPC_XDS_BOOTSTRAP) when bootstrap is nil.
	Resolver func(bootstrap []byte) (resolver.Builder, error)
	// ClientCredentials are gRPC-Go's xDS client credentials: TLS as the
	// cluster says, else fallback.
	ClientCredentials func(fallback credentials.TransportCredentials) (credentials.TransportCredentials, error)
	// NewServer returns gRPC-Go's xDS server.
	NewServer func(ServerConfig) (Server, error)
	// Telemetry returns gRPC-Go's own OpenTelemetry plugin
	// (google.golang.org/grpc/stats/opentelemetry) as a dial option and
	// a server option: gRPC's standard metrics, its xDS client's among
	// them, and spans.
	Telemetry func(Telemetry) (grpc.DialOption, grpc.ServerOption)
}

// Telemetry is where gRPC-Go's plugin records. A nil provider turns its
// part off.
type Telemetry struct {
	MeterProvider  metric.MeterProvider
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
}

// ServerConfig is what an xDS server needs from mesh.
type ServerConfig struct {
	// Bootstrap is the bootstrap JSON; nil means the environment's.
	Bootstrap []byte
	// Fallback serves a Listener without a TLS context (PERMISSIVE).
	Fallback credentials.TransportCredentials
	// Serving is told when an address starts or stops serving.
	Serving func(addr net.Addr, serving bool, err error)
	// Options are the other server options.
	Options []grpc.ServerOption
}

// Server is gRPC-Go's xDS server, as a *grpc.Server.
type Server interface {
	grpc.ServiceRegistrar
	Serve(net.Listener) error
	GracefulStop()
	Stop()
}

var registered atomic.Pointer[Path]

// Register makes p the xDS path mesh uses.
func Register(p *Path) { registered.Store(p) }

// Get returns the registered path, or nil when the program does not link
// one.
func Get() *Path { return registered.Load() }

// Import is what a program imports to link the path.
const Import = "github.com/meshlet/meshlet/mesh/grpcxds"

// ChannelCredsName is the channel_creds type in meshlet's gRPC-Go xDS
// bootstrap: mTLS to the control plane with the workload's SVID. Package
// mesh/grpcxds registers it with gRPC-Go; its config is {"key": K}, a key
// from AddChannelCreds, so that a bootstrap stays plain JSON.
const ChannelCredsName = "meshlet"

var channelCreds = struct {
	sync.Mutex
	m    map[string]credentials.TransportCredentials
	next uint64
}{m: map[string]credentials.TransportCredentials{}}

// AddChannelCreds keeps c under a new key until unregister.
func AddChannelCreds(c credentials.TransportCredentials) (key string, unregister func()) {
	channelCreds.Lock()
	defer channelCreds.Unlock()
	channelCreds.next++
	key = "cp-" + strconv.FormatUint(channelCreds.next, 10)
	channelCreds.m[key] = c
	return key, func() {
		channelCreds.Lock()
		delete(channelCreds.m, key)
		channelCreds.Unlock()
	}
}

// ChannelCreds returns the credentials kept under key.
func ChannelCreds(key string) (credentials.TransportCredentials, bool) {
	channelCreds.Lock()
	defer channelCreds.Unlock()
	c, ok := channelCreds.m[key]
	return c, ok
}
