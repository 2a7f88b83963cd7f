package mesh_test

import (
	"context"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/examples/greeterpb"
)

// The greeters the tests serve, over HTTP and over gRPC, with the same
// knobs: a call can be made to wait, or to fail the first times it is
// made, and every answer says which version and instance gave it and who
// called. The plain gRPC greeter is the examples' greeter.Server.

// greeterHandler is an HTTP greeter, told its version and address when it
// starts.
type greeterHandler interface {
	http.Handler
	named
}

// named is a greeter that is told its version and address when it starts.
type named interface {
	name(version, instance string)
}

// httpGreeter is the greeter over plain HTTP. It answers any path with
// headers that say which instance answered and who called, after delay
// and ?sleep=<duration>, and fails the first `failures` calls of each
// ?key= with 503.
type httpGreeter struct {
	version, instance string
	delay             time.Duration // before every answer
	failures          int
	calls             callCounts
}

func (g *httpGreeter) name(version, instance string) { g.version, g.instance = version, instance }

func (g *httpGreeter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	sleep, _ := time.ParseDuration(r.URL.Query().Get("sleep"))
	if !pause(r.Context(), g.delay+sleep) {
		return
	}
	if n := g.calls.add(r.URL.Query().Get("key")); n > 0 && n <= g.failures {
		http.Error(w, fmt.Sprintf("attempt %d fails on purpose", n), http.StatusServiceUnavailable)
		return
	}
	var certs []*x509.Certificate
	if r.TLS != nil {
		certs = r.TLS.PeerCertificates
	}
	w.Header().Set("X-Version", g.version)
	w.Header().Set("X-Instance", g.instance)
	w.Header().Set("X-Caller", callerOf(certs))
	io.WriteString(w, "hello from "+g.version)
}

// grpcGreeter is httpGreeter over gRPC: a request made by steer sleeps,
// and fails the first `failures` calls of each key with UNAVAILABLE. It
// answers with its version and instance, and who called as the message.
type grpcGreeter struct {
	greeterpb.UnimplementedGreeterServer
	version, instance string
	failures          int
	calls             callCounts
}

func (g *grpcGreeter) name(version, instance string) { g.version, g.instance = version, instance }

// steer returns a request that grpcGreeter answers after sleep, failing
// the first calls of key ("" for none).
func steer(sleep time.Duration, key string) *greeterpb.HelloRequest {
	return &greeterpb.HelloRequest{Name: fmt.Sprintf("%s|%s", sleep, key)}
}

func (g *grpcGreeter) SayHello(ctx context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	sleep, key, _ := strings.Cut(req.GetName(), "|")
	d, _ := time.ParseDuration(sleep)
	if !pause(ctx, d) {
		return nil, ctx.Err()
	}
	if n := g.calls.add(key); n > 0 && n <= g.failures {
		return nil, status.Errorf(codes.Unavailable, "attempt %d fails on purpose", n)
	}
	var certs []*x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			certs = ti.State.PeerCertificates
		}
	}
	return &greeterpb.HelloReply{Version: g.version, Instance: g.instance, Message: callerOf(certs)}, nil
}

// callCounts counts calls by key. It is safe for concurrent use.
type callCounts struct {
	mu sync.Mutex
	n  map[string]int
}

// add counts a call of key and returns how many there have been; 0 for
// the empty key, which is not counted.
func (c *callCounts) add(key string) int {
	if key == "" {
		return 0
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[key]++
	return c.n[key]
}

// pause waits for d, or until ctx ends, and reports whether d passed.
func pause(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// callerOf returns the SPIFFE ID in the client certificate of a
// connection, or "plaintext" when there is none.
func callerOf(certs []*x509.Certificate) string {
	if len(certs) == 0 || len(certs[0].URIs) == 0 {
		return "plaintext"
	}
	return certs[0].URIs[0].String()
}
