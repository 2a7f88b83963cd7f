package mesh

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
)

// rpcGate puts meshlet's own view of a target in front of gRPC-Go's xDS
// stack, which waits 15s for a host that does not exist and then fails
// with "produced zero addresses", and names no cluster when a subset is
// empty. A call waits as ConfigWait says, fails at once for a host the
// control plane says does not exist, and a call that failed without
// reaching a server is told which cluster had no endpoint.
type rpcGate struct {
	m      *Mesh
	target string // as the caller wrote it
	name   string // the client Listener's name
	host   atomic.Pointer[dataplane.Host]
}

func (g *rpcGate) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	h, err := g.admit(ctx, method, opts)
	if err != nil {
		return err
	}
	if !h.State().Incomplete {
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	var p peer.Peer
	err = invoker(ctx, method, req, reply, cc, append(opts, grpc.Peer(&p))...)
	if err != nil && p.Addr == nil {
		err = g.explain(ctx, h, method, err)
	}
	return err
}

func (g *rpcGate) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	h, err := g.admit(ctx, method, opts)
	if err != nil {
		return nil, err
	}
	s, err := streamer(ctx, desc, cc, method, opts...)
	if err != nil && h.State().Incomplete {
		// A stream that could not start never reached a server.
		err = g.explain(ctx, h, method, err)
	}
	return s, err
}

// admit waits until the call can go to gRPC-Go: the host is known, and
// while the registration grace lasts, the clusters its route sends to
// have endpoints.
func (g *rpcGate) admit(ctx context.Context, method string, opts []grpc.CallOption) (*dataplane.Host, error) {
	if h := g.host.Load(); h != nil {
		if st := h.State(); st.Routes != nil && !st.Incomplete {
			return h, nil // the common case: nothing to wait for
		}
	}
	waitForReady := false
	for _, o := range opts {
		if ff, ok := o.(grpc.FailFastCallOption); ok {
			waitForReady = !ff.FailFast
		}
	}
	wctx := ctx
	if !waitForReady {
		var cancel context.CancelFunc
		wctx, cancel = context.WithTimeout(ctx, g.m.wait.Timeout)
		defer cancel()
	}
	core, err := g.m.dataplane(wctx)
	if err != nil {
		return nil, err
	}
	h := core.Host(g.name)
	g.host.Store(h)
	routes, err := h.Routes(wctx, g.target, waitForReady)
	if err != nil {
		return nil, err
	}
	if st := h.State(); !st.Incomplete || core.GraceEnd(time.Now()).IsZero() {
		return h, nil
	}
	if r, err := resolver.MatchRoute(*routes, g.name, method, outgoingHeaders(ctx), "POST"); err == nil {
		core.AwaitClusters(wctx, dataplane.ActionClusters(r.Action))
	}
	return h, nil
}

// explain adds what meshlet knows to an Unavailable error of a call that
// did not reach a server: the route's clusters that have no endpoint.
func (g *rpcGate) explain(ctx context.Context, h *dataplane.Host, method string, err error) error {
	st := h.State()
	if status.Code(err) != codes.Unavailable || st.Routes == nil {
		return err
	}
	r, rerr := resolver.MatchRoute(*st.Routes, g.name, method, outgoingHeaders(ctx), "POST")
	if rerr != nil {
		return &rpcError{msg: fmt.Sprintf("mesh: %s: no route for %s in the control plane's config", g.name, method), grpcErr: err, gap: rerr}
	}
	gaps := g.m.xds.core.Gaps(dataplane.ActionClusters(r.Action))
	if len(gaps) == 0 {
		return err
	}
	gap := dataplane.JoinGaps(gaps)
	return &rpcError{msg: fmt.Sprintf("mesh: %s %s: %v", g.name, method, gap), grpcErr: err, gap: gap}
}

// rpcError is gRPC-Go's error with meshlet's reason in front. It keeps
// gRPC-Go's status code.
type rpcError struct {
	msg     string
	grpcErr error
	gap     error
}

func (e *rpcError) Error() string {
	return e.msg + " (gRPC: " + status.Convert(e.grpcErr).Message() + ")"
}

func (e *rpcError) Unwrap() []error { return []error{e.gap, e.grpcErr} }

func (e *rpcError) GRPCStatus() *status.Status {
	return status.New(status.Code(e.grpcErr), e.Error())
}

func outgoingHeaders(ctx context.Context) func(string) []string {
	md, _ := metadata.FromOutgoingContext(ctx)
	return func(name string) []string { return md.Get(name) }
}
