// Command plainservice is the memory benchmark's service without meshlet:
// a gRPC server and client and a net/http server and client, in one
// process, calling themselves on loopback over mTLS with an SVID from
// meshlet's CA, read from files, as a service using go-spiffe directly
// would. Built with -tags xdsimport, it also imports
// google.golang.org/grpc/xds, and uses nothing of it.
//
//	plainservice -cert svid.pem -key key.pem -bundle bundle.pem
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshlet/meshlet/bench/rss/internal/workload"
	"github.com/meshlet/meshlet/examples/greeter"
	"github.com/meshlet/meshlet/examples/greeterpb"
)

func main() {
	cert := flag.String("cert", "", "the SVID's certificate chain (PEM)")
	key := flag.String("key", "", "its key (PEM)")
	bundleFile := flag.String("bundle", "", "the trust bundle (PEM)")
	flag.Parse()
	svid, err := x509svid.Load(*cert, *key)
	if err != nil {
		workload.Fail(err)
	}
	bundle, err := x509bundle.Load(svid.ID.TrustDomain(), *bundleFile)
	if err != nil {
		workload.Fail(err)
	}
	serverTLS := tlsconfig.MTLSServerConfig(svid, bundle, tlsconfig.AuthorizeAny())
	clientTLS := tlsconfig.MTLSClientConfig(svid, bundle, tlsconfig.AuthorizeAny())

	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		workload.Fail(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(serverTLS)))
	greeterpb.RegisterGreeterServer(gs, &greeter.Server{Version: "plain", Instance: glis.Addr().String()})
	go gs.Serve(glis)
	hlis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		workload.Fail(err)
	}
	go (&http.Server{Handler: workload.Handler}).Serve(tls.NewListener(hlis, serverTLS))

	// passthrough: the address is an IP:port, nothing to look up.
	cc, err := grpc.NewClient("passthrough:///"+glis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(clientTLS)))
	if err != nil {
		workload.Fail(err)
	}
	gc := greeterpb.NewGreeterClient(cc)
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, TLSClientConfig: clientTLS, MaxIdleConnsPerHost: 64}}
	url := fmt.Sprintf("https://%s/", hlis.Addr())
	grpcCall := func(ctx context.Context) error {
		_, err := gc.SayHello(ctx, &greeterpb.HelloRequest{Name: "rss"})
		return err
	}
	httpCall := func(ctx context.Context) error { return workload.Get(ctx, hc, url) }
	workload.WaitFirst(context.Background(), "gRPC", grpcCall)
	workload.WaitFirst(context.Background(), "HTTP", httpCall)
	workload.Serve(grpcCall, httpCall)
}
