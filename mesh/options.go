package mesh

import (
	"crypto/x509"
	"log/slog"
	"maps"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/security"
	"github.com/meshlet/meshlet/telemetry"
)

// Option configures a Mesh.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// Locality is where a workload runs. Callers prefer endpoints in their own
// locality when a DestinationRule asks for it.
type Locality = balancer.Locality

type options struct {
	grpcGoXDS      bool
	service        string
	namespace      string
	serviceAccount string
	labels         map[string]string
	controlPlane   string
	locality       Locality
	log            *slog.Logger
	drainTimeout   time.Duration
	identity       security.Source
	caToken        string
	trustDomain    string
	cpRoots        []*x509.Certificate
	cpRootsFile    string
	cpID           string
	cpInsecure     bool
	clock          Clock
	configWait     ConfigWait
	adminAddr      string
	telemetry      *telemetry.Telemetry
}

// EnvControlPlane names the environment variable that gives the control
// plane's address when WithControlPlane is not used.
const EnvControlPlane = "MESHLET_CONTROL_PLANE"

// WithService sets the name of the service this process is an instance of.
// It is required. Its host is <service>.<namespace>.svc.cluster.local.
func WithService(name string) Option { return optionFunc(func(o *options) { o.service = name }) }

// WithNamespace sets the service's namespace. Default "default".
func WithNamespace(ns string) Option { return optionFunc(func(o *options) { o.namespace = ns }) }

// WithServiceAccount sets the service account, the identity the workload
// runs as. Default: the service name.
func WithServiceAccount(sa string) Option {
	return optionFunc(func(o *options) { o.serviceAccount = sa })
}

// WithLabels adds workload labels, such as version. DestinationRule subsets
// and ServiceEntry workload selectors match them. The label app is the
// service name unless given here.
func WithLabels(labels map[string]string) Option {
	return optionFunc(func(o *options) {
		if o.labels == nil {
			o.labels = map[string]string{}
		}
		maps.Copy(o.labels, labels)
	})
}

// WithControlPlane sets the control plane's xDS address (host:port). When
// it is not used, the MESHLET_CONTROL_PLANE environment variable is read.
func WithControlPlane(addr string) Option {
	return optionFunc(func(o *options) { o.controlPlane = addr })
}

// WithLocality sets where this workload runs.
func WithLocality(l Locality) Option { return optionFunc(func(o *options) { o.locality = l }) }

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.log = l }) }

// WithDrainTimeout bounds how long a stopping server waits for callers to
// move off before it stops. Default 10s.
func WithDrainTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.drainTimeout = d })
}

// ServerOption configures one server.
type ServerOption interface{ applyServer(*serverOptions) }

type serverOptionFunc func(*serverOptions)

func (f serverOptionFunc) applyServer(o *serverOptions) { f(o) }

type serverOptions struct {
	grpcOpts    []grpc.ServerOption
	grpcBackend newGRPCBackend // nil: meshlet's native gRPC server
	servicePort uint32
	weight      uint32
	advertise   string
}

// WithServicePort sets the port callers name in their target
// ("reviews:9080"), when the server listens on another port. Default: the
// listening port. A ServiceEntry, when there is one, defines the ports
// instead.
func WithServicePort(port uint32) ServerOption {
	return serverOptionFunc(func(o *serverOptions) { o.servicePort = port })
}

// WithWeight sets the endpoint's load-balancing weight. Default 1.
func WithWeight(w uint32) ServerOption {
	return serverOptionFunc(func(o *serverOptions) { o.weight = w })
}

// WithAdvertiseAddress sets the IP that callers use to reach the server.
// Default: the IP the listener is bound to, or, for a wildcard bind, the
// host's first non-loopback address.
func WithAdvertiseAddress(ip string) ServerOption {
	return serverOptionFunc(func(o *serverOptions) { o.advertise = ip })
}

// WithGRPCOptions passes options to the underlying gRPC server.
func WithGRPCOptions(opts ...grpc.ServerOption) ServerOption {
	return serverOptionFunc(func(o *serverOptions) { o.grpcOpts = append(o.grpcOpts, opts...) })
}

// Clock is the time the mesh's timers run on: the drain's quiet period.
// Its methods are safe for concurrent use; AfterFunc never calls f from
// within itself.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f once d has passed; stop cancels it and reports
	// whether it did so before f was called.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// WithClock sets the clock of the mesh's timers. It is for tests (see
// meshtest.Clock); default the system clock.
func WithClock(c Clock) Option {
	return optionFunc(func(o *options) {
		if c != nil {
			o.clock = c
		}
	})
}

// WithGRPCGoXDS makes Dial use gRPC-Go's own xDS client
// (google.golang.org/grpc/xds), the standard client other languages also
// use, instead of meshlet's data plane. It is slower (about 15 µs a
// call), and gets only what gRPC-Go implements: not meshlet's outlier
// ejection on gRPC status codes, peak EWMA or retries that skip hosts
// already tried. Each ClientConn opens its own xDS stream. The program
// must import mesh/grpcxds (import _
// "github.com/meshlet/meshlet/mesh/grpcxds"), which links gRPC-Go's xDS
// stack; without it Dial says so.
func WithGRPCGoXDS() Option { return optionFunc(func(o *options) { o.grpcGoXDS = true }) }

// WithAdminAddress serves the mesh's admin handler (see AdminHandler) on
// its own listener at addr, such as "127.0.0.1:15000" (":0" style ports
// pick a free one; AdminAddr says which), from New until Close. The pages
// expose the process's internals and have no authentication: give a
// loopback or otherwise private address. New fails if it cannot listen.
func WithAdminAddress(addr string) Option {
	return optionFunc(func(o *options) { o.adminAddr = addr })
}

// WithTelemetry gives every request this mesh's clients send and its
// servers serve (HTTP and native gRPC) a span, Istio's standard metrics
// and, if t has one, an access-log record; trace context crosses the
// wire as t's propagator says. It also exports the mesh's xDS client and
// cluster state as metrics, serves the metrics at AdminHandler's
// /metrics, and puts gRPC-Go's own OpenTelemetry plugin on the gRPC-Go
// xDS path (WithGRPCGoXDS, WithXDSServer). Default: none, at no cost.
// See docs/telemetry.md.
func WithTelemetry(t *telemetry.Telemetry) Option {
	return optionFunc(func(o *options) { o.telemetry = t })
}
