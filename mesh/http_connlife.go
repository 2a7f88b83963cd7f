package mesh

import (
	"crypto/tls"
	"net/http"
	"net/http/httptrace"

	"github.com/meshlet/meshlet/policy"
)

// setConnLifetime applies a cluster's connection lifetime to its pool:
// idleTimeout as the pool's IdleConnTimeout. maxRequestsPerConnection
// is counted on the pool's connections (countedConn, countRequest).
func setConnLifetime(tr *http.Transport, l policy.ConnLifetime) {
	if l.IdleTimeout > 0 {
		tr.IdleConnTimeout = l.IdleTimeout
	}
}

// countRequest returns req set to count the request against the
// connection net/http gives it, and, when it is the connection's max-th,
// to close the connection after the response (req.Close), so net/http
// does not reuse it. net/http reports the connection (GotConn) on the
// goroutine that sends, before it writes the request or reads req.Close.
func countRequest(req *http.Request, max uint32) *http.Request {
	var r *http.Request
	trace := &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		c := info.Conn
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		if cc, ok := c.(*countedConn); ok {
			if within, last := cc.uses.Use(max); last || !within {
				r.Close = true
			}
		}
	}}
	r = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	return r
}
