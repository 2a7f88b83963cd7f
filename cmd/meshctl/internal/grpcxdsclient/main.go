// Command grpcxdsclient is a gRPC-Go client that knows nothing of meshlet:
// gRPC-Go's own xDS stack, configured only by the GRPC_XDS_BOOTSTRAP file
// that meshctl bootstrap writes, with xDS credentials whose certificates
// come from the files meshctl agent keeps current. It stands for a service
// in another language in meshctl's end-to-end test, and is a program of
// its own because gRPC-Go's xDS client is global to a process.
//
// It calls the greeter at -target until one call succeeds, prints the
// server's verified SPIFFE ID, then calls for -duration, opening a new
// connection every -reconnect calls so that new handshakes use the
// rotated certificate, and prints "calls N failures M". It exits 0 only
// if every call of the loop succeeded.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/peer"
	_ "google.golang.org/grpc/xds" // the xds resolver, from GRPC_XDS_BOOTSTRAP

	"github.com/meshlet/meshlet/examples/greeterpb"
)

func main() {
	target := flag.String("target", "", "xds:///host:port")
	first := flag.Duration("first", 30*time.Second, "how long to wait for the first call to succeed")
	duration := flag.Duration("duration", 5*time.Second, "how long to call after the first success")
	interval := flag.Duration("interval", 20*time.Millisecond, "time between calls")
	reconnect := flag.Int("reconnect", 10, "open a new connection every this many calls")
	flag.Parse()
	if err := run(*target, *first, *duration, *interval, *reconnect); err != nil {
		fmt.Fprintln(os.Stderr, "grpcxdsclient:", err)
		os.Exit(1)
	}
}

func run(target string, first, duration, interval time.Duration, reconnect int) error {
	// TLS as the cluster's TLS context says, with the "meshlet"
	// certificate provider of the bootstrap.
	creds, err := xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()})
	if err != nil {
		return err
	}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return err
	}
	// The first call waits for the xDS config and the server.
	ctx, cancel := context.WithTimeout(context.Background(), first)
	var p peer.Peer
	_, err = greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: "first"}, grpc.WaitForReady(true), grpc.Peer(&p))
	cancel()
	if err != nil {
		cc.Close()
		return fmt.Errorf("first call: %w", err)
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.PeerCertificates) == 0 || len(info.State.PeerCertificates[0].URIs) == 0 {
		cc.Close()
		return fmt.Errorf("first call: not over TLS with a SPIFFE certificate (auth info %T)", p.AuthInfo)
	}
	fmt.Println("first call ok, server", info.State.PeerCertificates[0].URIs[0])

	var calls, failures int
	end := time.Now().Add(duration)
	for ; time.Now().Before(end); calls++ {
		if calls > 0 && calls%reconnect == 0 {
			cc.Close()
			if cc, err = grpc.NewClient(target, grpc.WithTransportCredentials(creds)); err != nil {
				return err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		// Not WaitForReady: a handshake that fails (a certificate the
		// server refuses) fails the call.
		_, err := greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: "loop"})
		cancel()
		if err != nil {
			failures++
			fmt.Fprintf(os.Stderr, "call %d: %v\n", calls, err)
		}
		time.Sleep(interval)
	}
	cc.Close()
	fmt.Printf("calls %d failures %d\n", calls, failures)
	if failures > 0 || calls == 0 {
		return fmt.Errorf("%d of %d calls failed", failures, calls)
	}
	return nil
}
