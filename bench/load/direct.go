//go:build linux

package main

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshlet/meshlet/security"
)

// startDirect serves the handler with a plain net/http server over mTLS
// with the server workload's SVID, and calls it with a plain client
// presenting the client workload's: mesh.BenchmarkHTTP/plain-https-mtls's
// setup. Both are HTTP/1.1, as meshlet's.
func startDirect(ctx context.Context, c config, ids *identities) (*variant, error) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	lis := &countingListener{Listener: inner}
	srv := &http.Server{Handler: handler(c.size)}
	go srv.Serve(tls.NewListener(lis, security.ServerTLSConfig(ids.server.Identity(), tlsconfig.AuthorizeAny())))
	tr := keepAlive()
	tr.TLSClientConfig = security.ClientTLSConfig(ids.client.Identity(), tlsconfig.AuthorizeAny())
	v := &variant{
		name:   "direct",
		client: &http.Client{Transport: tr},
		url:    "https://" + lis.Addr().String() + "/",
		peer:   "mtls",
		conns:  lis.n.Load,
		close: func() {
			tr.CloseIdleConnections()
			srv.Close()
		},
	}
	if err := v.probe(ctx, c); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}
