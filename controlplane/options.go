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

	trustDomain   string
	rootNamespace string
	caDir         string
	caCertFile    string
	caKeyFile     string
	caTokensFile  string
	caTokens      map[string]Identity
	caInsecureDev bool
	svidTTL       time.Duration
}

// Identity is a workload identity the CA issues SVIDs for.
type Identity struct {
	Namespace, ServiceAccount string
}

func defaultOptions() options {
	return options{
		xdsAddress:    "127.0.0.1:15010",
		adminAddress:  "127.0.0.1:15014",
		log:           slog.Default(),
		grace:         10 * time.Second,
		warmup:        5 * time.Second,
		drainTimeout:  5 * time.Second,
		debounce:      100 * time.Millisecond,
		trustDomain:   "cluster.local",
		rootNamespace: "istio-system",
		svidTTL:       time.Hour,
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

// WithTrustDomain sets the SPIFFE trust domain of the mesh. Default
// "cluster.local", Istio's.
func WithTrustDomain(td string) Option { return optionFunc(func(o *options) { o.trustDomain = td }) }

// WithRootNamespace sets the namespace whose PeerAuthentication and
// AuthorizationPolicy resources apply mesh-wide. Default "istio-system",
// Istio's.
func WithRootNamespace(ns string) Option {
	return optionFunc(func(o *options) { o.rootNamespace = ns })
}

// WithCADir sets where the built-in CA keeps the root it generates at
// first start. Without it (and without WithCARoot) the root lives in
// memory only and changes at every start.
func WithCADir(dir string) Option { return optionFunc(func(o *options) { o.caDir = dir }) }

// WithCARoot loads the CA's signing certificate and key from PEM files
// instead of generating a root.
func WithCARoot(certFile, keyFile string) Option {
	return optionFunc(func(o *options) { o.caCertFile, o.caKeyFile = certFile, keyFile })
}

// WithCATokensFile sets the YAML file of per-workload tokens that
// authenticate signing requests:
//
//	tokens:
//	- token: s3cr3t
//	  namespace: default
//	  serviceAccount: reviews
func WithCATokensFile(path string) Option {
	return optionFunc(func(o *options) { o.caTokensFile = path })
}

// WithCAToken adds one token for the workloads of namespace/service
// account id.
func WithCAToken(token string, id Identity) Option {
	return optionFunc(func(o *options) {
		if o.caTokens == nil {
			o.caTokens = map[string]Identity{}
		}
		o.caTokens[token] = id
	})
}

// WithCAInsecureDev makes the CA sign any identity in the trust domain
// without a token. It is for demos on loopback only, and the control plane
// says so loudly in its log.
func WithCAInsecureDev(on bool) Option {
	return optionFunc(func(o *options) { o.caInsecureDev = on })
}

// WithSVIDTTL sets the lifetime of the SVIDs the CA issues. Default 1h.
// Workloads renew at half of it.
func WithSVIDTTL(d time.Duration) Option { return optionFunc(func(o *options) { o.svidTTL = d }) }
