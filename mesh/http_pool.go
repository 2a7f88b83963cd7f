package mesh

import (
	"net/http"
	"sync"
	"time"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/security"
)

// HTTPTransport is the mesh's http.RoundTripper; see Mesh.HTTPTransport.
type HTTPTransport struct {
	m    *Mesh
	core *dataplane.Core
	opts httpOptions

	hosts sync.Map // by request authority: *dataplane.Host

	mu     sync.Mutex
	pools  map[string]*pool // by cluster name
	closed bool
}

// pool is the connections to one cluster's endpoints, for its TLS
// settings: mTLS checking the server's certificate against the cluster's
// SANs, or plaintext.
type pool struct {
	key   string // dataplane.TLSKey of the settings
	conns policy.ConnLifetime
	tr    *http.Transport
}

// Close closes idle connections. Routing state belongs to the mesh.
func (t *HTTPTransport) Close() error {
	t.m.mu.Lock()
	delete(t.m.transports, t)
	t.m.mu.Unlock()
	t.mu.Lock()
	pools := t.pools
	t.pools, t.closed = map[string]*pool{}, true
	t.mu.Unlock()
	for _, p := range pools {
		p.tr.CloseIdleConnections()
	}
	return nil
}

// transport returns the connection pool for cluster cl as its TLS
// settings stand, making a new one when they changed.
func (t *HTTPTransport) transport(cl *dataplane.Cluster) (*http.Transport, bool) {
	tls, key := cl.TLS()
	conns := cl.ConnLifetime()
	t.mu.Lock()
	defer t.mu.Unlock()
	if p := t.pools[cl.Name()]; p != nil && p.key == key && p.conns == conns {
		return p.tr, tls != nil
	}
	tr := &http.Transport{
		Proxy:               nil,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DialContext:         countedDialer(cl), // TLS, when set, goes over it
	}
	if tls != nil {
		tr.TLSClientConfig = security.ClientTLSConfig(t.m.identity, dataplane.ServerAuthorizer(cl.Name(), tls, t.m.spiffeID.TrustDomain()))
		// The SNI the cluster asks for goes in the ClientHello; the
		// server is verified by its SANs, not by this name.
		tr.TLSClientConfig.ServerName = tls.SNI
	}
	setConnLifetime(tr, conns)
	if old := t.pools[cl.Name()]; old != nil {
		old.tr.CloseIdleConnections()
	}
	if !t.closed {
		t.pools[cl.Name()] = &pool{key: key, conns: conns, tr: tr}
	}
	return tr, tls != nil
}
