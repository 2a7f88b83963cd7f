package ca

import (
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/capb"
	"github.com/meshlet/meshlet/internal/wire"
)

// Defaults for the zero fields of Config. The zero MaxTTL is DefaultTTL
// (Config.DefaultTTL as set, or this constant).
const (
	DefaultTrustDomain = wire.DefaultTrustDomain
	DefaultTTL         = time.Hour
)

// insecureDevWarning is logged at New when Config.InsecureDev is set.
const insecureDevWarning = "ca: insecure development mode: the CA signs any identity without a token; never use this outside loopback demos"

// Config configures a CA. The zero value of each field has the documented
// default.
type Config struct {
	// TrustDomain is the SPIFFE trust domain the CA signs for. Default
	// "cluster.local".
	TrustDomain string

	// Dir is where a generated root is kept: root-cert.pem and root-key.pem
	// (mode 0600). The root is generated at the first start and reused
	// after. If Dir and CertFile are both empty, the root is generated in
	// memory and lost when the process exits (tests, demos).
	Dir string

	// CertFile and KeyFile load the CA from PEM files instead of Dir: either
	// a self-signed root, or an intermediate CA certificate followed by its
	// chain up to and including the root. KeyFile holds the private key of
	// the first certificate in CertFile (PKCS #8, SEC 1 or PKCS #1). Set
	// both or neither; Dir is then unused.
	CertFile, KeyFile string

	// DefaultTTL is the lifetime of an SVID whose request asks for none.
	// Default 1h.
	DefaultTTL time.Duration

	// MaxTTL caps the lifetime of an SVID: a request for more gets MaxTTL.
	// Default DefaultTTL: the lifetime the operator chose is also the
	// most a workload can ask for, so a short TTL cannot be bypassed by
	// asking for a long one. Set it above DefaultTTL to let workloads
	// ask for longer. An SVID never outlives the CA certificates.
	MaxTTL time.Duration

	// TokensFile is a YAML file of bearer tokens and the identity each may
	// ask for:
	//
	//	tokens:
	//	- token: 4f0c...e1
	//	  namespace: default
	//	  serviceAccount: reviews
	//
	// It is read once, by New.
	TokensFile string

	// Tokens are tokens in addition to those in TokensFile (tests,
	// embedding).
	Tokens map[string]Identity

	// InsecureDev makes the CA sign a request without a token for any
	// ns/sa identity in the trust domain. Loopback demos only: anyone who
	// can reach the CA gets any identity. A request that carries a token is
	// still checked against it.
	InsecureDev bool

	// Log receives the CA's log. Default slog.Default().
	Log *slog.Logger

	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Identity is the workload identity a token is issued for:
// spiffe://<trust-domain>/ns/<Namespace>/sa/<ServiceAccount>.
type Identity struct {
	Namespace, ServiceAccount string
}

// String returns "ns/<namespace>/sa/<service-account>".
func (id Identity) String() string {
	return "ns/" + id.Namespace + "/sa/" + id.ServiceAccount
}

// spiffeID returns the identity's SPIFFE ID in td, or an error if a part is
// not a valid SPIFFE path segment.
func (id Identity) spiffeID(td spiffeid.TrustDomain) (spiffeid.ID, error) {
	if id.Namespace == "" {
		return spiffeid.ID{}, errors.New("namespace is missing")
	}
	if id.ServiceAccount == "" {
		return spiffeid.ID{}, errors.New("serviceAccount is missing")
	}
	if err := spiffeid.ValidatePathSegment(id.Namespace); err != nil {
		return spiffeid.ID{}, fmt.Errorf("namespace %q: %w", id.Namespace, err)
	}
	if err := spiffeid.ValidatePathSegment(id.ServiceAccount); err != nil {
		return spiffeid.ID{}, fmt.Errorf("serviceAccount %q: %w", id.ServiceAccount, err)
	}
	return spiffeid.FromSegments(td, "ns", id.Namespace, "sa", id.ServiceAccount)
}

// tokenKey is the SHA-256 of a token. Tokens are looked up by their hash,
// so neither the map nor a lookup's timing holds the token itself.
type tokenKey [sha256.Size]byte

func keyOf(token string) tokenKey { return sha256.Sum256([]byte(token)) }

// CA is a certificate authority for one trust domain. Its methods are safe
// for concurrent use and do not block.
type CA struct {
	td          spiffeid.TrustDomain
	defaultTTL  time.Duration
	maxTTL      time.Duration
	insecureDev bool
	log         *slog.Logger
	now         func() time.Time
	auth        *authority
	ephemeral   bool // the root is in memory only

	mu     sync.RWMutex
	tokens map[tokenKey]Identity
}

// New loads or creates the CA's root, reads the tokens and checks that the
// CA can issue an SVID that verifies against its own bundle. Every error
// names the file or field at fault.
func New(cfg Config) (*CA, error) {
	c := &CA{
		defaultTTL:  cfg.DefaultTTL,
		maxTTL:      cfg.MaxTTL,
		insecureDev: cfg.InsecureDev,
		log:         cfg.Log,
		now:         cfg.Now,
		tokens:      make(map[tokenKey]Identity),
	}
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.now == nil {
		c.now = time.Now
	}
	tdName := cfg.TrustDomain
	if tdName == "" {
		tdName = DefaultTrustDomain
	}
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return nil, fmt.Errorf("ca: trust domain %q: %w", tdName, err)
	}
	c.td = td
	if c.defaultTTL == 0 {
		c.defaultTTL = DefaultTTL
	}
	if c.maxTTL == 0 {
		c.maxTTL = c.defaultTTL
	}
	switch {
	case c.defaultTTL < 0:
		return nil, fmt.Errorf("ca: DefaultTTL %v is negative", c.defaultTTL)
	case c.maxTTL < 0:
		return nil, fmt.Errorf("ca: MaxTTL %v is negative", c.maxTTL)
	case c.defaultTTL > c.maxTTL:
		return nil, fmt.Errorf("ca: DefaultTTL %v is more than MaxTTL %v (lower DefaultTTL or raise MaxTTL)", c.defaultTTL, c.maxTTL)
	}

	if c.insecureDev {
		c.log.Warn(insecureDevWarning, "trust_domain", td.String())
	}

	switch {
	case cfg.CertFile != "" || cfg.KeyFile != "":
		if cfg.CertFile == "" || cfg.KeyFile == "" {
			return nil, fmt.Errorf("ca: CertFile %q and KeyFile %q: set both or neither", cfg.CertFile, cfg.KeyFile)
		}
		c.auth, err = loadAuthority(cfg.CertFile, cfg.KeyFile, c.now())
	case cfg.Dir != "":
		c.auth, err = loadOrCreateRoot(cfg.Dir, td, c.now(), c.log)
	default:
		c.log.Warn("ca: the root is kept in memory only: it changes at every start, so after a restart workloads started before it no longer trust workloads started after it, nor this control plane, until they get new SVIDs; keep it on disk (a state or CA directory) to avoid that")
		c.ephemeral = true
		c.auth, err = newMemoryRoot(td, c.now())
	}
	if err != nil {
		return nil, err
	}

	if cfg.TokensFile != "" {
		fileTokens, err := loadTokens(cfg.TokensFile, td)
		if err != nil {
			return nil, err
		}
		for k, id := range fileTokens {
			c.tokens[k] = id
		}
	}
	for token, id := range cfg.Tokens {
		if token == "" {
			return nil, fmt.Errorf("ca: Config.Tokens: the token for %s is empty", id)
		}
		if _, err := id.spiffeID(td); err != nil {
			// The token is not named: it is a secret.
			return nil, fmt.Errorf("ca: Config.Tokens: a token's identity: %w", err)
		}
		c.tokens[keyOf(token)] = id
	}

	if err := c.selfTest(); err != nil {
		return nil, err
	}
	c.log.Info("ca: ready",
		"trust_domain", td.String(),
		"ca_subject", c.auth.cert.Subject.String(),
		"ca_expires", c.auth.notAfter.UTC().Format(time.RFC3339),
		"tokens", len(c.tokens),
		"insecure_dev", c.insecureDev)
	return c, nil
}

// Register registers the CA's meshlet.ca.v1.CertificateAuthority service
// on s (a *grpc.Server, for example). The server should use TLS outside
// loopback: the bearer tokens travel in the request metadata.
func (c *CA) Register(s grpc.ServiceRegistrar) {
	capb.RegisterCertificateAuthorityServer(s, &server{ca: c})
}

// Bundle returns the trust domain's root certificates. The caller must not
// modify the certificates.
func (c *CA) Bundle() []*x509.Certificate {
	return append([]*x509.Certificate(nil), c.auth.roots...)
}

// TrustDomain returns the trust domain the CA signs for.
func (c *CA) TrustDomain() spiffeid.TrustDomain { return c.td }

// AddToken lets token ask for id from now on, replacing any identity it
// had. An empty token or an identity that is not a valid ns/sa SPIFFE path
// is refused and logged at Error: AddToken is for programs, which should
// pass valid input.
func (c *CA) AddToken(token string, id Identity) {
	if token == "" {
		c.log.Error("ca: AddToken: empty token refused", "identity", id.String())
		return
	}
	if _, err := id.spiffeID(c.td); err != nil {
		c.log.Error("ca: AddToken: identity refused", "identity", id.String(), "err", err)
		return
	}
	c.mu.Lock()
	c.tokens[keyOf(token)] = id
	c.mu.Unlock()
}

// RemoveToken stops token from being accepted. SVIDs already issued for it
// stay valid until they expire.
func (c *CA) RemoveToken(token string) {
	c.mu.Lock()
	delete(c.tokens, keyOf(token))
	c.mu.Unlock()
}

// lookup returns the identity of token.
func (c *CA) lookup(token string) (Identity, bool) {
	c.mu.RLock()
	id, ok := c.tokens[keyOf(token)]
	c.mu.RUnlock()
	return id, ok
}
