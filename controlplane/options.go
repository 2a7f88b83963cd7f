package controlplane

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshlet/meshlet/internal/localtrust"
	"github.com/meshlet/meshlet/internal/wire"
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

	stateDir          string
	caInMemory        bool
	servingNames      []string
	insecurePlaintext bool
	plaintextXDS      string
	trustBundle       []*x509.Certificate
	trustAdvertised   bool
	limits            Limits
}

// Limits bound what clients can make the control plane hold. A zero field
// has the default given.
type Limits struct {
	// Streams bounds the open xDS streams. Default 10,000.
	Streams int
	// StreamsPerConnection bounds the concurrent gRPC streams of one
	// connection (HTTP/2 MAX_CONCURRENT_STREAMS). Default 100.
	StreamsPerConnection uint32
	// NamesPerRequest bounds the resource names of one xDS request.
	// Default 10,000.
	NamesPerRequest int
	// InboundPerStream bounds the server Listener names one xDS stream
	// asks for. Default 64.
	InboundPerStream int
	// RegistrationsPerIdentity bounds the instances one identity
	// registers. Default 1,000.
	RegistrationsPerIdentity int
	// AdminMaxHeaderBytes, AdminReadHeaderTimeout and AdminIdleTimeout
	// bound the admin port's requests. Defaults 60 KiB, 5s and 60s.
	AdminMaxHeaderBytes    int
	AdminReadHeaderTimeout time.Duration
	AdminIdleTimeout       time.Duration
}

// Defaults of Limits.
const (
	DefaultStreams                  = 10000
	DefaultNamesPerRequest          = 10000
	DefaultInboundPerStream         = 64
	DefaultStreamsPerConnection     = 100
	DefaultRegistrationsPerIdentity = 1000
	DefaultAdminMaxHeaderBytes      = 60 << 10
	DefaultAdminReadHeaderTimeout   = 5 * time.Second
	DefaultAdminIdleTimeout         = 60 * time.Second
)

func (l Limits) withDefaults() Limits {
	if l.Streams <= 0 {
		l.Streams = DefaultStreams
	}
	if l.NamesPerRequest <= 0 {
		l.NamesPerRequest = DefaultNamesPerRequest
	}
	if l.InboundPerStream <= 0 {
		l.InboundPerStream = DefaultInboundPerStream
	}
	if l.StreamsPerConnection == 0 {
		l.StreamsPerConnection = DefaultStreamsPerConnection
	}
	if l.RegistrationsPerIdentity <= 0 {
		l.RegistrationsPerIdentity = DefaultRegistrationsPerIdentity
	}
	if l.AdminMaxHeaderBytes <= 0 {
		l.AdminMaxHeaderBytes = DefaultAdminMaxHeaderBytes
	}
	if l.AdminReadHeaderTimeout <= 0 {
		l.AdminReadHeaderTimeout = DefaultAdminReadHeaderTimeout
	}
	if l.AdminIdleTimeout <= 0 {
		l.AdminIdleTimeout = DefaultAdminIdleTimeout
	}
	return l
}

// DefaultStateDir is where the control plane keeps what must survive a
// restart (the CA's root) when WithStateDir is not used:
// $XDG_STATE_HOME/meshlet, or ~/.local/state/meshlet.
func DefaultStateDir() (string, error) {
	d, err := localtrust.DefaultStateDir()
	if err != nil {
		return "", fmt.Errorf("controlplane: %w: set one with WithStateDir (--state-dir)", err)
	}
	return d, nil
}

// CARootPath returns the file of the CA's root certificate in a state
// directory: the roots that workloads in other processes verify the
// control plane with (MESHLET_CONTROL_PLANE_ROOTS).
func CARootPath(stateDir string) string { return localtrust.CARootPath(stateDir) }

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
		trustDomain:   wire.DefaultTrustDomain,
		rootNamespace: wire.DefaultRootNamespace,
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
// first start. Default: the "ca" folder of the state directory.
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

// WithStateDir sets the directory where the control plane keeps what must
// survive a restart: the CA's root (in "ca", unless WithCADir or
// WithCARoot says otherwise). Default DefaultStateDir().
func WithStateDir(dir string) Option { return optionFunc(func(o *options) { o.stateDir = dir }) }

// WithCAInMemory keeps a generated CA root in memory only. Every start
// then makes a new root: workloads started before a restart no longer
// trust the control plane or the workloads started after it until they
// get new SVIDs, and the control plane says so in a WARN. For tests.
func WithCAInMemory(on bool) Option { return optionFunc(func(o *options) { o.caInMemory = on }) }

// WithServingNames adds DNS names and IP addresses to the control plane's
// serving certificate, for xDS clients that check the host they dial
// (gRPC's TLS channel credentials in a file bootstrap). Its SPIFFE ID,
// spiffe://<trust domain>/ns/<root namespace>/sa/meshlet-controlplane, is
// what meshlet workloads check. Default: localhost, 127.0.0.1, ::1, the
// host name, and the xDS address's IP.
func WithServingNames(names ...string) Option {
	return optionFunc(func(o *options) { o.servingNames = append(o.servingNames, names...) })
}

// WithInsecurePlaintext serves the xDS, registration and CA port in
// plaintext and believes what clients claim about themselves. For
// development on loopback only: Start refuses it on any other address,
// and logs a warning.
func WithInsecurePlaintext(on bool) Option {
	return optionFunc(func(o *options) { o.insecurePlaintext = on })
}

// WithPlaintextXDSAddress opens a second, plaintext port that serves
// client xDS resources read-only, like istiod's 15010, for xDS clients
// that cannot do TLS. It serves no registration, no CA and no server
// Listeners. Default off.
func WithPlaintextXDSAddress(addr string) Option {
	return optionFunc(func(o *options) { o.plaintextXDS = addr })
}

// WithTrustBundle adds roots that client certificates may chain to, besides
// the CA's own: SPIRE's bundle when workloads take their identity from
// SPIRE.
func WithTrustBundle(roots ...*x509.Certificate) Option {
	return optionFunc(func(o *options) { o.trustBundle = append(o.trustBundle, roots...) })
}

// WithTrustAdvertisedAddresses believes the address a server registers
// even when its connection comes from another one (NAT). Default off: a
// registration's address must be its connection's, or, for a connection
// over loopback, an address of the control plane's host.
func WithTrustAdvertisedAddresses(on bool) Option {
	return optionFunc(func(o *options) { o.trustAdvertised = on })
}

// WithLimits sets the limits on what clients can make the control plane
// hold; zero fields keep their defaults.
func WithLimits(l Limits) Option { return optionFunc(func(o *options) { o.limits = l }) }
