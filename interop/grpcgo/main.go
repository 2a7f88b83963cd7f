// Command grpcgo is the interop tests' Greeter client on plain gRPC-Go:
// gRPC-Go's own xDS client, configured only by the GRPC_XDS_BOOTSTRAP file
// that meshctl bootstrap writes, and nothing of meshlet's library. It takes
// the flags of python/client.py and node/client.js and prints the same
// JSON line per call:
//
//	{"ok":true,"version":"v1","instance":"127.0.0.1:4242","message":"...","ms":0.8}
//	{"ok":false,"code":"UNAVAILABLE","message":"...","ms":1.2}
//
// It is a program of its own because gRPC-Go's xDS client is global to a
// process.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	xdscreds "google.golang.org/grpc/credentials/xds"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	_ "google.golang.org/grpc/xds" // the xds resolver, from GRPC_XDS_BOOTSTRAP

	"github.com/meshlet/meshlet/examples/greeterpb"
)

// pairs collects repeated --metadata KEY=VALUE flags.
type pairs []string

func (p *pairs) String() string { return strings.Join(*p, ",") }
func (p *pairs) Set(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok {
		return fmt.Errorf("%q: want KEY=VALUE", kv)
	}
	*p = append(*p, strings.ToLower(k), v)
	return nil
}

// seconds is a duration flag in (fractional) seconds, as the Python and
// Node clients take it.
type seconds struct{ d *time.Duration }

func (s seconds) String() string {
	if s.d == nil {
		return "0"
	}
	return fmt.Sprint(s.d.Seconds())
}
func (s seconds) Set(v string) error {
	d, err := time.ParseDuration(v + "s")
	*s.d = d
	return err
}

type options struct {
	target          string
	count           int
	md              pairs
	timeout, ready  time.Duration
	xdsCreds        bool
	name            string
	interval        time.Duration
	callsPerChannel int
	hold            bool
}

func main() {
	o := options{timeout: 5 * time.Second, ready: 15 * time.Second}
	flag.StringVar(&o.target, "target", "", "e.g. xds:///greeter.default.svc.cluster.local:50051")
	flag.IntVar(&o.count, "count", 1, "how many calls to make")
	flag.Var(&o.md, "metadata", "KEY=VALUE request metadata for every call (repeatable)")
	flag.Var(seconds{&o.timeout}, "timeout", "each call's deadline, in seconds")
	flag.Var(seconds{&o.ready}, "ready-timeout", "how long to wait for the channel to be ready, in seconds")
	flag.BoolVar(&o.xdsCreds, "xds-creds", false, "use the TLS settings xDS gives (certificate providers), plaintext where it gives none")
	flag.StringVar(&o.name, "name", "interop", "the name in each request")
	flag.Var(seconds{&o.interval}, "interval", "seconds between calls")
	flag.IntVar(&o.callsPerChannel, "calls-per-channel", 0, "a new channel (and connection) every N calls; 0: one for all")
	flag.BoolVar(&o.hold, "hold", false, "after the calls, keep the channel (and its xDS stream) until stdin ends")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "grpcgo:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	creds := insecure.NewCredentials()
	if o.xdsCreds {
		var err error
		if creds, err = xdscreds.NewClientCredentials(xdscreds.ClientOptions{FallbackCreds: insecure.NewCredentials()}); err != nil {
			return err
		}
	}
	out := bufio.NewWriter(os.Stdout)
	var cc *grpc.ClientConn
	defer func() {
		if cc != nil {
			cc.Close()
		}
	}()
	for i := range o.count {
		if cc == nil || (o.callsPerChannel > 0 && i%o.callsPerChannel == 0) {
			// The new channel first: gRPC-Go's xDS client (and its stream)
			// lives as long as some channel uses it.
			next, err := newChannel(o, creds)
			if err != nil {
				return err
			}
			if cc != nil {
				cc.Close()
			}
			cc = next
		} else if o.interval > 0 {
			time.Sleep(o.interval)
		}
		if err := json.NewEncoder(out).Encode(call(cc, o)); err != nil {
			return err
		}
		if err := out.Flush(); err != nil {
			return err
		}
	}
	if o.hold {
		// The test looks at this client's xDS stream on the control plane,
		// then closes our stdin.
		_, _ = io.Copy(io.Discard, os.Stdin)
	}
	return nil
}

// newChannel connects to the target and waits, bounded, until it is
// ready; a channel not ready in time is reported and used anyway, so that
// the calls fail with the status gRPC gives them.
func newChannel(o options, creds credentials.TransportCredentials) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(o.target, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.ready)
	defer cancel()
	cc.Connect()
	for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
		if !cc.WaitForStateChange(ctx, s) {
			fmt.Fprintf(os.Stderr, "grpcgo: channel to %s not ready after %v (%v); calling anyway\n", o.target, o.ready, s)
			break
		}
	}
	return cc, nil
}

// result is one call's JSON line.
type result struct {
	OK       bool    `json:"ok"`
	Version  string  `json:"version,omitempty"`
	Instance string  `json:"instance,omitempty"`
	Code     string  `json:"code,omitempty"`
	Message  string  `json:"message"`
	MS       float64 `json:"ms"`
}

func call(cc *grpc.ClientConn, o options) result {
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	if len(o.md) > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, o.md...)
	}
	start := time.Now()
	reply, err := greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: o.name})
	ms := float64(time.Since(start).Microseconds()) / 1000
	if err != nil {
		s := status.Convert(err)
		return result{Code: codeName(s.Code()), Message: s.Message(), MS: ms}
	}
	return result{OK: true, Version: reply.GetVersion(), Instance: reply.GetInstance(), Message: reply.GetMessage(), MS: ms}
}

// codeName is the code as the other languages name it: DEADLINE_EXCEEDED,
// not DeadlineExceeded.
func codeName(c codes.Code) string {
	var b strings.Builder
	lower := false
	for _, r := range c.String() {
		upper := r >= 'A' && r <= 'Z'
		if upper && lower {
			b.WriteByte('_')
		}
		lower = !upper
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}
