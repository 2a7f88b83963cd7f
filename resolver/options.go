package resolver

import (
	"log/slog"
	"time"

	"google.golang.org/grpc"
)

// Option configures a Client.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	servers         []string
	node            Node
	dialOptions     []grpc.DialOption
	log             *slog.Logger
	backoffBase     time.Duration
	backoffMax      time.Duration
	notFoundTimeout time.Duration
}

// Defaults of the options.
const (
	DefaultBackoffBase     = 100 * time.Millisecond
	DefaultBackoffMax      = 5 * time.Second
	DefaultNotFoundTimeout = 15 * time.Second
)

func defaultOptions() options {
	return options{
		log:             slog.Default(),
		backoffBase:     DefaultBackoffBase,
		backoffMax:      DefaultBackoffMax,
		notFoundTimeout: DefaultNotFoundTimeout,
	}
}

// WithServers sets the control planes' xDS addresses (host:port). The
// client uses one at a time. When its stream fails it moves on to the
// next, round robin, and after a round in which none answered it backs
// off. It is required.
func WithServers(addrs ...string) Option {
	return optionFunc(func(o *options) { o.servers = append([]string(nil), addrs...) })
}

// Node identifies this workload to the control plane. Leave ID empty for a
// generated one.
//
// The metadata sent uses istiod's keys, as meshlet's gRPC bootstrap does:
// NAMESPACE, SERVICE_ACCOUNT, WORKLOAD_NAME, LABELS and GENERATOR ("grpc",
// as the resources served are the proxyless gRPC ones). Metadata adds
// other keys, or overrides these; its values must be what
// structpb.NewValue accepts.
type Node struct {
	ID       string
	Cluster  string
	Metadata map[string]any
	Locality Locality

	Namespace      string
	ServiceAccount string
	WorkloadName   string
	Labels         map[string]string
}

// WithNode sets the node this client presents.
func WithNode(n Node) Option { return optionFunc(func(o *options) { o.node = n }) }

// WithDialOptions adds gRPC dial options for the connections to the
// control plane. Default: insecure transport credentials, and keepalive
// pings every 30s, so that a control plane gone without a word is noticed.
func WithDialOptions(opts ...grpc.DialOption) Option {
	return optionFunc(func(o *options) { o.dialOptions = append(o.dialOptions, opts...) })
}

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.log = l }) }

// WithBackoff sets the exponential backoff between rounds of connection
// attempts, and between repeats of a rejected update: it starts at base,
// doubles up to max, and has ±20% jitter. Default 100ms to 5s.
func WithBackoff(base, max time.Duration) Option {
	return optionFunc(func(o *options) { o.backoffBase, o.backoffMax = base, max })
}

// WithResourceNotFoundTimeout sets how long a watched name may go without
// an answer, while connected, before its watchers get ErrResourceNotFound.
// Default 15s, as gRPC-Go. Zero or less turns it off.
func WithResourceNotFoundTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.notFoundTimeout = d })
}
