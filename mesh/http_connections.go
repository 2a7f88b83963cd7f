package mesh

import (
	"context"
	"net"
	"sync"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/policy"
)

// countedDialer dials the cluster's endpoints for its http.Transport,
// each connection holding one of the cluster's connection slots
// (tcp.maxConnections) until it is closed: by net/http's idle pool, by
// the server, or by an error. Over the limit the dial fails with the
// cluster's *dataplane.RefusedError, which the request then fails with:
// Envoy would queue an HTTP/1 request for a connection (up to
// http1MaxPendingRequests); meshlet fails it fast, with a 503.
func countedDialer(cl *dataplane.Cluster) func(context.Context, string, string) (net.Conn, error) {
	var d net.Dialer // what http.Transport uses without DialContext
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if err := cl.StartConnection(); err != nil {
			return nil, err
		}
		c, err := d.DialContext(ctx, network, addr)
		if err != nil {
			cl.EndConnection()
			return nil, err
		}
		return &countedConn{Conn: c, cl: cl}, nil
	}
}

// countedConn gives back its slot on the first Close; net/http may close
// a connection more than once. It also counts the requests it carries,
// for maxRequestsPerConnection (countRequest).
type countedConn struct {
	net.Conn
	cl   *dataplane.Cluster
	once sync.Once
	uses policy.ConnUses
}

func (c *countedConn) Close() error {
	c.once.Do(c.cl.EndConnection)
	return c.Conn.Close()
}
