package controlplane

import (
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/meshlet/meshlet/internal/clock"
	"github.com/meshlet/meshlet/internal/localtrust"
	"github.com/meshlet/meshlet/internal/wire"
)

// Option configures a control plane.
type Option interface{ apply(*options) }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

type options struct {
	configDir        string
	xdsAddress       string
	adminAddress     string
	log              *slog.Logger
	grace            time.Duration
	warmup           time.Duration
	drainAck         time.Duration
	debounce         Debounce
	registryDebounce Debounce
	clock            Clock
	deprecated       []string // one line per deprecated option used, logged by Start

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

// Defaults of the options. The command's flags take their defaults from
// here, so that each is stated once.
const (
	DefaultXDSAddress        = "127.0.0.1:15010"
	DefaultAdminAddress      = "127.0.0.1:15014"
	DefaultRegistrationGrace = 10 * time.Second
	DefaultWarmup            = 5 * time.Second
	DefaultDrainAckTimeout   = 5 * time.Second
	DefaultTrustDomain       = wire.DefaultTrustDomain
	DefaultRootNamespace     = wire.DefaultRootNamespace
	DefaultSVIDTTL           = time.Hour

	// DefaultDebounceAfter is short because the writes of one save (an
	// editor's write and rename, a ConfigMap's link swap, a script
	// copying a few files) come within a few milliseconds of each other,
	// and a reload, which parses only the changed files, costs about as
	// much: waiting longer would only delay a single change. istiod's
	// 100ms is for pushes that cost far more.
	DefaultDebounceAfter = 20 * time.Millisecond
	// DefaultDebounceMax bounds how stale the served config can be while
	// files keep changing, and so how often such a stream reloads.
	DefaultDebounceMax = time.Second

	// DefaultRegistryDebounceAfter coalesces a registration's two changes
	// (NOT_SERVING, then SERVING, a round trip apart) and a fleet's
	// registrations into one push: without it, 100 xDS clients decoding a
	// push per registry change starved the registrations themselves
	// (bench/scale). Only a drain's answer waits for the push.
	DefaultRegistryDebounceAfter = 20 * time.Millisecond
	// DefaultRegistryDebounceMax bounds how late a registry change is
	// pushed while registrations keep coming.
	DefaultRegistryDebounceMax = 200 * time.Millisecond
)

// Debounce is how the control plane waits for a burst of config file
// changes to end before it reloads, as istiod does its pushes
// (PILOT_DEBOUNCE_AFTER, PILOT_DEBOUNCE_MAX): it reloads once no change
// has come for a quiet time, but no later than Max after the first change
// it waits on. A zero field has its default.
type Debounce struct {
	// After is the longest quiet time after the last change. Default
	// DefaultDebounceAfter. For config changes, a lone change (or changes
	// less than After/8 apart) waits After/4; changes further apart wait
	// twice the longest gap between them, up to After, and so do changes
	// that come within After of the last reload. Registry changes are
	// debounced the same way.
	After time.Duration
	// Max bounds the wait after the first change; below After, it is
	// After. Default DefaultDebounceMax.
	Max time.Duration
}

// WithRegistryDebounce sets how registry changes (registrations, state
// changes, deregistrations) are coalesced into pushes. A zero field has
// its default: DefaultRegistryDebounceAfter, DefaultRegistryDebounceMax.
func WithRegistryDebounce(d Debounce) Option {
	return optionFunc(func(o *options) {
		if d.After > 0 {
			o.registryDebounce.After = d.After
		}
		if d.Max > 0 {
			o.registryDebounce.Max = d.Max
		}
	})
}

// WithDebounce sets how config changes are coalesced into reloads.
func WithDebounce(d Debounce) Option {
	return optionFunc(func(o *options) {
		if d.After > 0 {
			o.debounce.After = d.After
		}
		if d.Max > 0 {
			o.debounce.Max = d.Max
		}
	})
}

// Limits bound what clients can make the control plane hold. A zero field
// has the default given.
type Limits struct {
	// Streams bounds the open xDS streams. Default DefaultStreams.
	Streams int
	// StreamsPerConnection bounds the concurrent gRPC streams of one
	// connection (HTTP/2 MAX_CONCURRENT_STREAMS). Default
	// DefaultStreamsPerConnection.
	StreamsPerConnection uint32
	// NamesPerRequest bounds the resource names of one xDS request.
	// Default DefaultNamesPerRequest.
	NamesPerRequest int
	// InboundPerStream bounds the server Listener names one xDS stream
	// asks for. Default DefaultInboundPerStream.
	InboundPerStream int
	// RegistrationsPerIdentity bounds the instances one identity
	// registers. Default DefaultRegistrationsPerIdentity.
	RegistrationsPerIdentity int
	// AdminMaxHeaderBytes, AdminReadHeaderTimeout and AdminIdleTimeout
	// bound the admin port's requests. Defaults DefaultAdminMaxHeaderBytes,
	// DefaultAdminReadHeaderTimeout and DefaultAdminIdleTimeout.
	AdminMaxHeaderBytes    int
	AdminReadHeaderTimeout time.Duration
	AdminIdleTimeout       time.Duration
	// SendBytes bounds the bytes of encoded xDS responses the control
	// plane holds for all clients together, from encoding until they are
	// written to the connection (a client that reads slowly holds its
	// response's bytes until then). A stream that would pass it waits
	// its turn before it encodes. Default DefaultSendBytes; negative: no
	// bound.
	SendBytes int64
	// SendTimeout is how long an xDS response may wait to be written to
	// a client that does not read before the client's stream is closed
	// (DeadlineExceeded; the client reconnects), as istiod's
	// PILOT_XDS_SEND_TIMEOUT. Default DefaultSendTimeout; negative:
	// never.
	SendTimeout time.Duration
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
	DefaultSendBytes                = 128 << 20
	DefaultSendTimeout              = 30 * time.Second
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
	if l.SendBytes == 0 {
		l.SendBytes = DefaultSendBytes
	}
	if l.SendTimeout == 0 {
		l.SendTimeout = DefaultSendTimeout
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
		xdsAddress:       DefaultXDSAddress,
		adminAddress:     DefaultAdminAddress,
		log:              slog.Default(),
		grace:            DefaultRegistrationGrace,
		warmup:           DefaultWarmup,
		drainAck:         DefaultDrainAckTimeout,
		debounce:         Debounce{After: DefaultDebounceAfter, Max: DefaultDebounceMax},
		registryDebounce: Debounce{After: DefaultRegistryDebounceAfter, Max: DefaultRegistryDebounceMax},
		clock:            clock.System{},
		trustDomain:      DefaultTrustDomain,
		rootNamespace:    DefaultRootNamespace,
		svidTTL:          DefaultSVIDTTL,
	}
}

// WithConfigDir sets the directory of Istio YAML to serve. It is required.
func WithConfigDir(dir string) Option { return optionFunc(func(o *options) { o.configDir = dir }) }

// WithXDSAddress sets the address of the xDS and registration gRPC port.
// Default DefaultXDSAddress; port 0 picks a free port.
func WithXDSAddress(addr string) Option { return optionFunc(func(o *options) { o.xdsAddress = addr }) }

// WithAdminAddress sets the address of the admin HTTP port (health and
// debug pages). Default DefaultAdminAddress; an empty address turns it
// off.
func WithAdminAddress(addr string) Option {
	return optionFunc(func(o *options) { o.adminAddress = addr })
}

// WithLogger sets the logger. Default slog.Default().
func WithLogger(l *slog.Logger) Option { return optionFunc(func(o *options) { o.log = l }) }

// WithRegistrationGrace sets how long an instance whose connection died
// stays in EDS before it is removed. Default DefaultRegistrationGrace. A
// clean deregistration
// removes an instance at once.
func WithRegistrationGrace(d time.Duration) Option {
	return optionFunc(func(o *options) { o.grace = d })
}

// WithWarmup sets how long a restarted control plane withholds endpoints,
// so that servers can register again before callers are sent endpoint
// sets. It applies only when clients of an earlier control plane connect
// within this time after start. Default DefaultWarmup.
func WithWarmup(d time.Duration) Option { return optionFunc(func(o *options) { o.warmup = d }) }

// Clock is the time that the control plane's timers run on: the warm-up
// after a restart (WithWarmup), the registration grace period
// (WithRegistrationGrace) and the config debounce (WithDebounce). It is for tests, which pass a fake clock, such
// as meshtest.Clock, and move it on instead of waiting; the default is the
// system clock. Its methods are called from several goroutines and must
// not block.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// AfterFunc calls f once d has passed, never from within the
	// AfterFunc call, so that f may take locks its caller holds. stop
	// cancels the call, and reports whether it did so before f was
	// called, as time.AfterFunc and (*time.Timer).Stop do.
	AfterFunc(d time.Duration, f func()) (stop func() bool)
}

// WithClock sets the clock of the warm-up, registration-grace and
// config-debounce timers.
// It is for tests; default the system clock.
func WithClock(c Clock) Option {
	return optionFunc(func(o *options) {
		if c != nil {
			o.clock = c
		}
	})
}

// WithDrainAckTimeout bounds how long the control plane waits, when a
// server says it is draining, for every caller to acknowledge endpoints
// without that server before it answers "drained". Default
// DefaultDrainAckTimeout. It is not a server's own drain time
// (mesh.WithDrainTimeout), within which the server waits for that answer.
func WithDrainAckTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) { o.drainAck = d })
}

// WithDrainTimeout is the former name of WithDrainAckTimeout; Start logs
// a deprecation line when it is used.
//
// Deprecated: use WithDrainAckTimeout, which means the same. The old name
// read like mesh.WithDrainTimeout, which is something else.
func WithDrainTimeout(d time.Duration) Option {
	return optionFunc(func(o *options) {
		o.drainAck = d
		o.deprecated = append(o.deprecated, "controlplane.WithDrainTimeout is deprecated: use WithDrainAckTimeout, which means the same (how long a drain waits for callers' ACKs)")
	})
}

// WithTrustDomain sets the SPIFFE trust domain of the mesh. Default
// DefaultTrustDomain, "cluster.local", Istio's.
func WithTrustDomain(td string) Option { return optionFunc(func(o *options) { o.trustDomain = td }) }

// WithRootNamespace sets the namespace whose PeerAuthentication and
// AuthorizationPolicy resources apply mesh-wide. Default
// DefaultRootNamespace, "istio-system", Istio's.
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

// WithSVIDTTL sets the lifetime of the SVIDs the CA issues, and the most a
// CSR may ask for. Default DefaultSVIDTTL. Workloads renew at half of it.
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
