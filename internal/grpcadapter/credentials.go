package grpcadapter

import (
	"context"
	"errors"
	"net"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/security"
)

// clientCreds connect to an endpoint as its cluster says: mTLS with the
// workload's SVID, checking the server's SPIFFE ID against the cluster's
// SANs, or plaintext. The cluster comes with the address, as the
// resolver's attribute.
type clientCreds struct {
	id    security.Source
	td    spiffeid.TrustDomain
	plain credentials.TransportCredentials

	mu  sync.Mutex
	tls map[string]credentials.TransportCredentials // by cluster and TLS key
}

func newClientCreds(id security.Source, td spiffeid.TrustDomain) *clientCreds {
	return &clientCreds{id: id, td: td, plain: insecure.NewCredentials(), tls: map[string]credentials.TransportCredentials{}}
}

var errNoUpstream = errors.New("mesh: an address without its cluster (not from meshlet's resolver)")

func (c *clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	u := upstreamOf(credentials.ClientHandshakeInfoFromContext(ctx).Attributes)
	if u == nil {
		return nil, nil, errNoUpstream
	}
	if u.tls == nil {
		return c.plain.ClientHandshake(ctx, authority, raw)
	}
	return c.forCluster(u).ClientHandshake(ctx, authority, raw)
}

// forCluster returns TLS credentials for a cluster's settings. They are
// kept per cluster, since the refusal names the cluster, and per
// settings, since a change makes new ones.
func (c *clientCreds) forCluster(u *upstream) credentials.TransportCredentials {
	key := u.cluster + " " + u.tlsKey
	c.mu.Lock()
	defer c.mu.Unlock()
	if tc := c.tls[key]; tc != nil {
		return tc
	}
	cfg := security.ClientTLSConfig(c.id, dataplane.ServerAuthorizer(u.cluster, u.tls, c.td))
	// The SNI the cluster asks for goes in the ClientHello; the server is
	// verified by its SANs, not by this name.
	cfg.ServerName = u.tls.SNI
	tc := credentials.NewTLS(cfg)
	c.tls[key] = tc
	return tc
}

func (c *clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("mesh: client credentials used on a server")
}

func (c *clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "meshlet"}
}

func (c *clientCreds) Clone() credentials.TransportCredentials { return c }

func (c *clientCreds) OverrideServerName(string) error { return nil }
