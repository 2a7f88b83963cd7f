package controlplane

import (
	"log/slog"
	"time"
)

// Option configures a control plane.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	configDir    string
	xdsAddress   string
	adminAddress string
	log          *slog.Logger
	grace        time.Duration
	warmup       time.Duration
	drainTimeout time.Duration
	debounce     time.Duration
}

func defaultOptions() options {
	return options{
		xdsAddress:   "127.0.0.1:15010",
		adminAddress: "127.0.0.1:15014",
		log:          slog.Default(),
		grace:        10 * time.Second,
		warmup:       5 * time.Second,
		drainTimeout: 5 * time.Second,
		debounce:     100 * time.Millisecond,
	}
}

// WithConfigDir sets the directory of Istio YAML to serve. It is required.
func WithConfigDir(dir string) Option { return optionFunc(func(o *options) { o.configDir = dir }) }

// WithXDSAddress sets the address of the xDS and registration gRPC port.
// Default 127.0.0.1:15010; port 0 picks a free port.
func WithXDSAddress(addr string) Option { return optionFunc(func(o *options) { o.xdsAddress = addr }) }

// WithAdminAddress sets the address of the admin HTTP port (health and
// debug pages). Default 127.0.0.1:15014; an empty address turns it off.
func WithAdminAddress(addr string) Option {
	return optionFunc(func(o *options) { o.adminAddress = addr })
}

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.log = l }) }

// WithRegistrationGrace sets how long an instance whose connection died
// stays in EDS before it is removed. Default 10s. A clean deregistration
// removes an instance at once.
func WithRegistrationGrace(d time.Duration) Option {
	return optionFunc(func(o *options) { o.grace = d })
}

// WithWarmup sets how long a restarted control plane withholds endpoints,
// so that servers can register again before callers are sent endpoint
// sets. It applies only when clients of an earlier control plane connect
// within this time after start. Default 5s.
func WithWarmup(d time.Duration) Option { return optionFunc(func(o *options) { o.warmup = d }) }

// WithDrainTimeout bounds how long a draining server waits for callers to
// acknowledge endpoints without it. Default 5s.
func WithDrainTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.drainTimeout = d })
}
