package mesh_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
)

// BenchmarkUnary compares one unary RPC through meshlet (an xDS-routed
// client, weighted route, EDS endpoints, mTLS with SPIFFE SVIDs, to a mesh
// server) with the same RPC between a plain grpc-go client and server,
// plaintext and with the same mTLS, in the same process and run, so that
// the ratios are what to read on a noisy machine.
func BenchmarkUnary(b *testing.B) {
	req := &greeterpb.HelloRequest{Name: "bench"}
	b.Run("plain-grpc", func(b *testing.B) {
		addr := startPlainGreeter(b, "plain")
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runUnary(b, greeterpb.NewGreeterClient(cc), req)
	})
	b.Run("plain-grpc-mtls", func(b *testing.B) {
		// The same SVIDs meshlet uses, from a control plane's CA.
		cp, _ := startControlPlane(b, nil)
		serverID := startMesh(b, cp.XDSAddr(), "greeter", nil).Identity()
		clientID := startMesh(b, cp.XDSAddr(), "client", nil).Identity()
		addr := startPlainGreeter(b, "plain", grpc.Creds(credentials.NewTLS(security.ServerTLSConfig(serverID, tlsconfig.AuthorizeAny()))))
		cc, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(credentials.NewTLS(security.ClientTLSConfig(clientID, tlsconfig.AuthorizeAny()))))
		if err != nil {
			b.Fatal(err)
		}
		defer cc.Close()
		runUnary(b, greeterpb.NewGreeterClient(cc), req)
	})
	b.Run("meshlet", func(b *testing.B) {
		cp, _ := startControlPlane(b, map[string]string{
			"greeter-rules.yaml": greeterRules,
			"greeter-route.yaml": splitRoute(80, 20),
		})
		startGreeter(b, cp.XDSAddr(), "v1")
		startGreeter(b, cp.XDSAddr(), "v2")
		client := dialGreeter(b, startMesh(b, cp.XDSAddr(), "client", nil))
		waitServing(b, client, "v1", "v2")
		runUnary(b, client, req)
	})
}

func runUnary(b *testing.B, c greeterpb.GreeterClient, req *greeterpb.HelloRequest) {
	ctx := context.Background()
	if _, err := c.SayHello(ctx, req); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.SayHello(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHTTP compares one HTTP request through meshlet's client and
// server (xDS routing, weighted route, EDS endpoints, the balancer, mTLS
// with SPIFFE SVIDs, the authorization check) with plain net/http on
// loopback, plaintext and over the same mTLS, in the same run.
func BenchmarkHTTP(b *testing.B) {
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	run := func(b *testing.B, c *http.Client, url string) {
		get := func() {
			resp, err := c.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
		get()
		b.ReportAllocs()
		b.ResetTimer()
		for b.Loop() {
			get()
		}
	}
	b.Run("plain-http", func(b *testing.B) {
		srv := httptest.NewServer(handler)
		defer srv.Close()
		run(b, srv.Client(), srv.URL+"/")
	})
	b.Run("plain-https-mtls", func(b *testing.B) {
		cp, _ := startControlPlane(b, nil)
		serverID := startMesh(b, cp.XDSAddr(), "greeter", nil).Identity()
		clientID := startMesh(b, cp.XDSAddr(), "client", nil).Identity()
		lis, err := tls.Listen("tcp", "127.0.0.1:0", security.ServerTLSConfig(serverID, tlsconfig.AuthorizeAny()))
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: handler}
		go srv.Serve(lis)
		defer srv.Close()
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: security.ClientTLSConfig(clientID, tlsconfig.AuthorizeAny())}}
		run(b, c, "https://"+lis.Addr().String()+"/")
	})
	b.Run("meshlet", func(b *testing.B) {
		cp, _ := startControlPlane(b, map[string]string{
			"greeter-rules.yaml": greeterRules,
			"greeter-route.yaml": splitRoute(80, 20),
		})
		for _, v := range []string{"v1", "v2"} {
			m := startMesh(b, cp.XDSAddr(), "greeter", map[string]string{"version": v})
			serveHTTPGreeter(b, m, v, nil)
		}
		c := httpClientFor(b, startMesh(b, cp.XDSAddr(), "client", nil))
		meshtest.WaitUntil(b, 15*time.Second, "both versions", func() bool {
			r, err := httpCall(b.Context(), c, "/", "")
			return err == nil && r.version != "" && r.caller != "plaintext"
		})
		run(b, c, fmt.Sprintf("http://greeter:%d/", greeterPort))
	})
}
