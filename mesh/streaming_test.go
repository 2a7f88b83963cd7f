package mesh_test

import (
	"context"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/meshtest"
)

// streamKind is one kind of streaming RPC of the greeter.
type streamKind struct {
	name string
	// call makes one call of the kind whose first request is first, and
	// whose others, for the kinds that send more, are named "b" and "c".
	// It returns the replies that came, and how the call ended.
	call func(ctx context.Context, c greeterpb.GreeterClient, first *greeterpb.HelloRequest) ([]*greeterpb.HelloReply, error)
	// want are the messages of a call that succeeds.
	want func(first string) []string
}

var (
	serverStreaming = streamKind{
		name: "server streaming",
		call: func(ctx context.Context, c greeterpb.GreeterClient, first *greeterpb.HelloRequest) ([]*greeterpb.HelloReply, error) {
			s, err := c.SayHellos(ctx, &greeterpb.HelloRequest{Name: first.GetName(), Count: 3})
			if err != nil {
				return nil, err
			}
			var out []*greeterpb.HelloReply
			for {
				r, err := s.Recv()
				if err == io.EOF {
					return out, nil
				}
				if err != nil {
					return out, err
				}
				out = append(out, r)
			}
		},
		want: func(string) []string { return []string{"hello 1", "hello 2", "hello 3"} },
	}
	clientStreaming = streamKind{
		name: "client streaming",
		call: func(ctx context.Context, c greeterpb.GreeterClient, first *greeterpb.HelloRequest) ([]*greeterpb.HelloReply, error) {
			s, err := c.CollectHellos(ctx)
			if err != nil {
				return nil, err
			}
			for _, req := range []*greeterpb.HelloRequest{first, {Name: "b"}, {Name: "c"}} {
				if s.Send(req) != nil {
					break // CloseAndRecv says why
				}
			}
			r, err := s.CloseAndRecv()
			if err != nil {
				return nil, err
			}
			return []*greeterpb.HelloReply{r}, nil
		},
		want: func(first string) []string { return []string{first + ",b,c"} },
	}
	bidiStreaming = streamKind{
		name: "bidi streaming",
		call: func(ctx context.Context, c greeterpb.GreeterClient, first *greeterpb.HelloRequest) ([]*greeterpb.HelloReply, error) {
			s, err := c.Chat(ctx)
			if err != nil {
				return nil, err
			}
			var out []*greeterpb.HelloReply
			for _, req := range []*greeterpb.HelloRequest{first, {Name: "b"}, {Name: "c"}} {
				if err := s.Send(req); err != nil && err != io.EOF {
					return out, err
				} // io.EOF: the stream ended, and Recv says how
				r, err := s.Recv()
				if err != nil {
					return out, err
				}
				out = append(out, r)
			}
			s.CloseSend()
			if _, err := s.Recv(); err != io.EOF {
				return out, fmt.Errorf("after the last reply: %v, want the end of the stream", err)
			}
			return out, nil
		},
		want: func(first string) []string { return []string{first, "b", "c"} },
	}
	streamKinds = []streamKind{serverStreaming, clientStreaming, bidiStreaming}
)

// stream makes one call of kind k steered by key (see steer), as user
// when not "". It checks that the replies, if it succeeded, are the ones
// k wants and came from one instance, which it returns.
func stream(t *testing.T, c greeterpb.GreeterClient, k streamKind, user, key string) (*greeterpb.HelloReply, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if user != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "end-user", user)
	}
	first := steer(0, key)
	replies, err := k.call(ctx, c, first)
	if err != nil {
		return nil, err
	}
	var msgs []string
	for _, r := range replies {
		msgs = append(msgs, r.GetMessage())
		if r.GetInstance() != replies[0].GetInstance() {
			t.Fatalf("%s: replies from %s and %s, want one instance", k.name, replies[0].GetInstance(), r.GetInstance())
		}
	}
	if want := k.want(first.GetName()); !slices.Equal(msgs, want) {
		t.Fatalf("%s: replies %q, want %q", k.name, msgs, want)
	}
	return replies[0], nil
}

// Streams of every kind are routed by the VirtualService, the method as
// path and the metadata as headers, and split by its weights, on both of
// meshlet's gRPC paths.
func TestStreamRouting(t *testing.T) {
	for _, tr := range []transport{nativeGRPC, grpcGoXDS} {
		t.Run(tr.name, func(t *testing.T) {
			cp, _ := startControlPlane(t, map[string]string{"rules.yaml": greeterRules, "route.yaml": splitRoute(80, 20)})
			startGreeterWith(t, cp.XDSAddr(), "v1", &grpcGreeter{})
			startGreeterWith(t, cp.XDSAddr(), "v2", &grpcGreeter{})
			waitRegistered(t, cp, 2)
			c := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil, tr.clientOpts...))
			waitServing(t, c, "v1", "v2")
			for _, k := range streamKinds {
				t.Run(k.name, func(t *testing.T) {
					for i := range 50 {
						r, err := stream(t, c, k, "jason", "")
						if err != nil {
							t.Fatalf("stream %d as jason: %v", i, err)
						}
						if r.GetVersion() != "v2" {
							t.Fatalf("stream %d as jason reached %s, want v2 (header match)", i, r.GetVersion())
						}
					}
					// 1,000 streams split 80/20: v1's share is 80% ±5
					// points (4 sigma).
					const n = 1000
					v1 := 0
					for i := range n {
						r, err := stream(t, c, k, "", "")
						if err != nil {
							t.Fatalf("stream %d: %v", i, err)
						}
						if r.GetVersion() == "v1" {
							v1++
						}
					}
					share := 100 * float64(v1) / n
					t.Logf("v1 got %.1f%% of %d streams", share, n)
					if math.Abs(share-80) > 5 {
						t.Errorf("v1 got %.1f%% of %d streams, want 80 ±5", share, n)
					}
				})
			}
		})
	}
}

// A stream whose instance fails with UNAVAILABLE before its first reply
// is retried on another instance when the route has retries: the
// messages it sent are sent again, and the caller sees one whole answer.
// Without retries (the control), the streams that reach that instance
// fail.
func TestStreamRetriedBeforeFirstReply(t *testing.T) {
	for _, tc := range []struct {
		name, retries string
	}{
		{"retries", "    retries:\n      attempts: 3\n      retryOn: unavailable\n"},
		{"no retries (control)", "    retries:\n      attempts: 0\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			retried := tc.name == "retries"
			cp, _ := startControlPlane(t, map[string]string{"route.yaml": greeterRoute(toGreeter("", tc.retries))})
			bad, good := &grpcGreeter{failures: math.MaxInt}, &grpcGreeter{}
			startGreeterWith(t, cp.XDSAddr(), "v1", bad)
			startGreeterWith(t, cp.XDSAddr(), "v1", good)
			waitRegistered(t, cp, 2)
			c := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
			waitServingInstances(t, grpcCaller(t, c), 2)
			for _, k := range streamKinds {
				t.Run(k.name, func(t *testing.T) {
					before := bad.calls.total()
					failed := 0
					for i := range 20 {
						r, err := stream(t, c, k, "", fmt.Sprintf("%s %d", k.name, i))
						switch {
						case err == nil && r.GetInstance() != good.instance:
							t.Fatalf("stream %d answered by %s, want the good instance %s", i, r.GetInstance(), good.instance)
						case err == nil:
						case status.Code(err) != codes.Unavailable:
							t.Fatalf("stream %d: %v, want success or UNAVAILABLE", i, err)
						default:
							failed++
						}
					}
					reached := bad.calls.total() - before
					t.Logf("%d of 20 streams reached the failing instance, %d failed", reached, failed)
					if reached == 0 {
						t.Fatalf("no stream reached the failing instance; the test shows nothing")
					}
					if retried && failed > 0 {
						t.Errorf("%d of 20 streams failed, want 0: each that reached the failing instance is retried on the other", failed)
					}
					if !retried && failed != reached {
						t.Errorf("%d streams failed, want the %d that reached the failing instance", failed, reached)
					}
				})
			}
		})
	}
}

// A client stream whose instance fails while the client is still sending
// is retried with every message, those sent before the failure and those
// after: a Send does not fail while the stream may yet be retried, as
// with gRPC-Go's own retries.
func TestClientStreamFailingWhileSendingRetriedWhole(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"route.yaml": greeterRoute(toGreeter("", "    retries:\n      attempts: 3\n      retryOn: unavailable\n"))})
	bad, good := &grpcGreeter{failures: math.MaxInt}, &grpcGreeter{}
	startGreeterWith(t, cp.XDSAddr(), "v1", bad)
	startGreeterWith(t, cp.XDSAddr(), "v1", good)
	waitRegistered(t, cp, 2)
	c := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
	waitServingInstances(t, grpcCaller(t, c), 2)
	reached := 0
	for i := range 10 {
		key := fmt.Sprintf("stream %d", i)
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		s, err := c.CollectHellos(ctx)
		if err != nil {
			t.Fatal(err)
		}
		first := steer(0, key)
		s.Send(first)
		names := []string{first.GetName()}
		// The instance fails once it has the first message: the messages
		// sent from now on race its failure.
		meshtest.WaitUntil(t, 5*time.Second, "the first message to arrive", func() bool { return bad.calls.of(key)+good.calls.of(key) > 0 })
		if bad.calls.of(key) > 0 {
			reached++
		}
		for j := range 60 {
			name := fmt.Sprintf("m%d", j)
			if err := s.Send(&greeterpb.HelloRequest{Name: name}); err != nil {
				t.Errorf("stream %d: message %d: %v, want it sent: the stream has no reply yet, and may be retried", i, j+1, err)
				break
			}
			names = append(names, name)
		}
		r, err := s.CloseAndRecv()
		cancel()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		if want := strings.Join(names, ","); r.GetMessage() != want {
			t.Fatalf("stream %d: the server got %q, want %q", i, r.GetMessage(), want)
		}
	}
	t.Logf("%d of 10 streams reached the failing instance", reached)
	if reached == 0 {
		t.Fatalf("no stream reached the failing instance; the test shows nothing")
	}
}

// A stream that delivered a reply is committed: when its instance then
// fails with UNAVAILABLE, the caller gets the error, though the route
// retries UNAVAILABLE, and no other instance is tried. (A client-streaming
// call has one reply, and so nothing after it.)
func TestStreamNotRetriedAfterFirstReply(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"route.yaml": greeterRoute(toGreeter("", "    retries:\n      attempts: 3\n      retryOn: unavailable\n"))})
	// Each fails the first call of each key, after its first reply: a
	// retry would have been answered, and counted.
	a := &grpcGreeter{failures: 1, failAfterFirst: true}
	b := &grpcGreeter{failures: 1, failAfterFirst: true}
	startGreeterWith(t, cp.XDSAddr(), "v1", a)
	startGreeterWith(t, cp.XDSAddr(), "v1", b)
	waitRegistered(t, cp, 2)
	c := dialGreeter(t, startMesh(t, cp.XDSAddr(), "client", nil))
	waitServingInstances(t, grpcCaller(t, c), 2)
	for _, k := range []streamKind{serverStreaming, bidiStreaming} {
		t.Run(k.name, func(t *testing.T) {
			for i := range 10 {
				key := fmt.Sprintf("%s %d", k.name, i)
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				replies, err := k.call(ctx, c, steer(0, key))
				cancel()
				if status.Code(err) != codes.Unavailable || len(replies) != 1 {
					t.Fatalf("stream %d: %d replies, then %v; want 1 reply, then UNAVAILABLE", i, len(replies), err)
				}
				if n := a.calls.of(key) + b.calls.of(key); n != 1 {
					t.Fatalf("stream %d was tried %d times, want once: it had delivered a reply", i, n)
				}
			}
		})
	}
}
