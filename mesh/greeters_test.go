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

	"google.golang.org/grpc"
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
// Its streams are steered by their first request, and fail, when they
// do, before their first reply, or after it with failAfterFirst.
type grpcGreeter struct {
	greeterpb.UnimplementedGreeterServer
	version, instance string
	delay             time.Duration // before every answer, and every reply of a stream
	failures          int
	failAfterFirst    bool
	calls             callCounts
}

func (g *grpcGreeter) name(version, instance string) { g.version, g.instance = version, instance }

// steer returns a request that grpcGreeter answers after sleep, failing
// the first calls of key ("" for none).
func steer(sleep time.Duration, key string) *greeterpb.HelloRequest {
	return &greeterpb.HelloRequest{Name: fmt.Sprintf("%s|%s", sleep, key)}
}

// start waits as req says and counts the call of its key. It returns the
// failure the call comes to, nil if it succeeds, and an error if ctx
// ended first.
func (g *grpcGreeter) start(ctx context.Context, req *greeterpb.HelloRequest) (fail, err error) {
	sleep, key, _ := strings.Cut(req.GetName(), "|")
	d, _ := time.ParseDuration(sleep)
	if !pause(ctx, g.delay+d) {
		return nil, ctx.Err()
	}
	if n := g.calls.add(key); n > 0 && n <= g.failures {
		return status.Errorf(codes.Unavailable, "attempt %d fails on purpose", n), nil
	}
	return nil, nil
}

func (g *grpcGreeter) reply(ctx context.Context, msg string) *greeterpb.HelloReply {
	if msg == "" {
		var certs []*x509.Certificate
		if p, ok := peer.FromContext(ctx); ok {
			if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
				certs = ti.State.PeerCertificates
			}
		}
		msg = callerOf(certs)
	}
	return &greeterpb.HelloReply{Version: g.version, Instance: g.instance, Message: msg}
}

func (g *grpcGreeter) SayHello(ctx context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	fail, err := g.start(ctx, req)
	if err != nil {
		return nil, err
	}
	if fail != nil {
		return nil, fail
	}
	return g.reply(ctx, ""), nil
}

// serveStream sends a stream's replies, one a message of next until it
// says there are no more, failing as the first request's steering says:
// before the first reply, or after it with failAfterFirst.
func (g *grpcGreeter) serveStream(ctx context.Context, first *greeterpb.HelloRequest, send func(*greeterpb.HelloReply) error, next func() (msg string, more bool, err error)) error {
	fail, err := g.start(ctx, first)
	if err != nil {
		return err
	}
	if fail != nil && !g.failAfterFirst {
		return fail
	}
	for i := 0; ; i++ {
		if i > 0 && fail != nil {
			return fail
		}
		msg, more, err := next()
		if err != nil || !more {
			return err
		}
		if i > 0 && !pause(ctx, g.delay) {
			return ctx.Err()
		}
		if err := send(g.reply(ctx, msg)); err != nil {
			return err
		}
	}
}

// SayHellos answers req, which steers it, with its count of replies
// ("hello 1", "hello 2", ...), 1 when 0.
func (g *grpcGreeter) SayHellos(req *greeterpb.HelloRequest, stream grpc.ServerStreamingServer[greeterpb.HelloReply]) error {
	n, sent := max(int(req.GetCount()), 1), 0
	return g.serveStream(stream.Context(), req, stream.Send, func() (string, bool, error) {
		sent++
		return fmt.Sprintf("hello %d", sent), sent <= n, nil
	})
}

// CollectHellos answers with the names of the requests, joined with
// commas; the first steers it.
func (g *grpcGreeter) CollectHellos(stream grpc.ClientStreamingServer[greeterpb.HelloRequest, greeterpb.HelloReply]) error {
	first, err := stream.Recv()
	if err != nil {
		return err
	}
	done := false
	return g.serveStream(stream.Context(), first, stream.SendAndClose, func() (string, bool, error) {
		if done {
			return "", false, nil
		}
		done = true
		names := []string{first.GetName()}
		for {
			req, err := stream.Recv()
			if err == io.EOF {
				return strings.Join(names, ","), true, nil
			}
			if err != nil {
				return "", false, err
			}
			names = append(names, req.GetName())
		}
	})
}

// Chat answers each request as it comes with its name; the first steers
// it.
func (g *grpcGreeter) Chat(stream grpc.BidiStreamingServer[greeterpb.HelloRequest, greeterpb.HelloReply]) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	first := req
	return g.serveStream(stream.Context(), first, stream.Send, func() (string, bool, error) {
		if req == nil {
			var err error
			if req, err = stream.Recv(); err == io.EOF {
				return "", false, nil
			} else if err != nil {
				return "", false, err
			}
		}
		name := req.GetName()
		req = nil
		return name, true, nil
	})
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

// of returns how many calls of key there have been.
func (c *callCounts) of(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[key]
}

// total returns how many calls of every key there have been.
func (c *callCounts) total() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, k := range c.n {
		n += k
	}
	return n
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
