package xdsserver

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"golang.org/x/sync/semaphore"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	protocodec "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Where the memory of a push lives, and why it is bounded here.
//
// gRPC encodes a response into a pooled buffer (a 335 KiB response takes
// a 1 MiB buffer from its pool) that stays referenced until HTTP/2 flow
// control lets the last byte out, that is until the client reads it. A
// push to 1,000 clients that read slowly (sharing the cores with the
// control plane) held about 1,000 such buffers, 790 MB, at once. Every
// xDS response is therefore encoded into a buffer of its own size, and
// only after the stream has taken room for it from a server-wide budget;
// the room is given back when gRPC frees the buffer, which it does once
// the transport has written the last byte (or dropped the stream). A
// response that is not written within the send timeout means a client
// that does not read: its stream is closed (istiod does the same with
// its push send timeout), so that it cannot hold room for ever.
// (The responses' resources are the build's bytes, not copies:
// passthrough.go.)

// Flow bounds what the server holds for clients that read slowly. A zero
// field is no bound.
type Flow struct {
	// Budget is the bytes of encoded xDS responses that all streams
	// together may hold, from encoding until the transport has written
	// them. A stream that would pass it waits, before it encodes, in
	// the order streams asked. A response larger than the budget takes
	// all of it.
	Budget int64
	// SendTimeout is how long an encoded response may wait to be
	// written (the client reads too slowly or not at all) before its
	// stream is closed with DeadlineExceeded.
	SendTimeout time.Duration
}

// FlowStats are the counters of the send budget.
type FlowStats struct {
	Budget   int64         // the configured budget, 0 for none
	InFlight int64         // bytes of encoded responses held now
	Waits    int64         // responses that waited for room
	WaitTime time.Duration // their waits, summed
	TimedOut int64         // streams closed because a response was not written in time
}

type flow struct {
	Flow
	log   *slog.Logger
	inner serverv3.Server
	srv   *Server
	sem   *semaphore.Weighted // nil without a budget
	conns *connTracker

	inFlight  atomic.Int64
	waits     atomic.Int64
	waitNanos atomic.Int64
	timedOut  atomic.Int64
}

func newFlow(log *slog.Logger, srv *Server, inner serverv3.Server, f Flow) *flow {
	fl := &flow{Flow: f, log: log, srv: srv, inner: inner, conns: newConnTracker()}
	if f.Budget > 0 {
		fl.sem = semaphore.NewWeighted(f.Budget)
	}
	return fl
}

func (f *flow) stats() FlowStats {
	return FlowStats{
		Budget:   f.Budget,
		InFlight: f.inFlight.Load(),
		Waits:    f.waits.Load(),
		WaitTime: time.Duration(f.waitNanos.Load()),
		TimedOut: f.timedOut.Load(),
	}
}

// FlowStats returns the send budget's counters.
func (s *Server) FlowStats() FlowStats { return s.flow.stats() }

// ServerOptions returns the gRPC server options that every gRPC server
// serving this ADS service needs: the codec that encodes responses into
// buffers that give their room back when gRPC frees them. Other messages
// are encoded as gRPC's proto codec does.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.ForceServerCodecV2(flowCodec{encoding.GetCodecV2(protocodec.Name)})}
}

// adsService is the ADS service with the send budget in front of
// go-control-plane's.
type adsService struct {
	serverv3.Server
	f *flow
}

// StreamAggregatedResources serves one ADS stream. go-control-plane's
// handler runs on a goroutine of its own so that a stream whose response
// is not written in time can be ended here: a send blocked on a client
// that does not read returns only when the stream ends, and the stream
// ends only when this handler returns.
func (a adsService) StreamAggregatedResources(ss discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	if a.f.sem == nil && a.f.SendTimeout <= 0 {
		return a.Server.StreamAggregatedResources(ss)
	}
	fs := &flowStream{AggregatedDiscoveryService_StreamAggregatedResourcesServer: ss, f: a.f, stuck: make(chan struct{}),
		peer: peerOf(ss.Context())}
	fs.conn = a.f.conns.lookup(fs.peer)
	done := make(chan error, 1)
	go func() { done <- a.Server.StreamAggregatedResources(fs) }()
	select {
	case err := <-done:
		return err
	case <-fs.stuck:
		// The inner handler ends when its blocked send fails, at once
		// after this returns (the connection is closed, or the stream
		// ends with this status).
		return status.Errorf(codes.DeadlineExceeded,
			"control plane: an xDS response of %d bytes was not read within %s; the stream is closed (reconnect, and read responses as they come)",
			fs.stuckSize, a.f.SendTimeout)
	}
}

// flowStream is one ADS stream whose responses go through the budget.
type flowStream struct {
	discovery.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	f    *flow
	peer string
	conn *trackedConn // nil when the server's listener is not tracked

	once      sync.Once
	stuck     chan struct{} // closed when a response was not written in time
	stuckSize int           // that response's size, set before stuck is closed
}

// Send waits for room in the budget, and sends resp in a buffer that gives the room back when it is
// freed.
func (fs *flowStream) Send(resp *discovery.DiscoveryResponse) error {
	f := fs.f
	size := proto.Size(resp)
	tok := &sendToken{f: f, size: size}
	if f.sem != nil {
		tok.n = min(int64(size), f.Budget)
		if !f.sem.TryAcquire(tok.n) {
			start := time.Now()
			err := f.sem.Acquire(fs.Context(), tok.n)
			f.waits.Add(1)
			f.waitNanos.Add(int64(time.Since(start)))
			if err != nil {
				return err
			}
		}
		f.inFlight.Add(tok.n)
	}
	// The timer is set before hold publishes the token: the connection's
	// Close may release it (and read the timer) at once after.
	if f.SendTimeout > 0 {
		tok.timer = time.AfterFunc(f.SendTimeout, func() { fs.timedOut(size) })
	}
	if !fs.conn.hold(tok) {
		tok.release()
		return errConnClosed
	}
	err := fs.SendMsg(&budgeted{msg: resp, tok: tok})
	if err != nil && !tok.encoded.Load() {
		tok.release()
	}
	return err
}

// timedOut closes the stream of a response not written in time, and
// its connection: gRPC queues the stream's end behind the unwritten
// response, so only closing the connection lets that response go (and
// gives its room back). A client that does not read on one stream is
// not reading its connection either.
func (fs *flowStream) timedOut(size int) {
	fs.once.Do(func() {
		fs.stuckSize = size
		fs.f.timedOut.Add(1)
		fs.f.log.Warn("xDS stream and its connection closed: a response was not read within the send timeout (the client reads too slowly or not at all)",
			"peer", fs.peer, "bytes", size, "sendTimeout", fs.f.SendTimeout)
		fs.conn.close()
		close(fs.stuck)
	})
}

// sendToken is one response's room in the budget, given back once.
type sendToken struct {
	f       *flow
	size    int
	n       int64 // room taken
	timer   *time.Timer
	conn    *trackedConn // holds the token until it is released
	encoded atomic.Bool  // the codec made its buffer: freeing that gives the room back
	once    sync.Once
}

func (t *sendToken) release() {
	t.once.Do(func() {
		if t.timer != nil {
			t.timer.Stop()
		}
		t.conn.drop(t)
		if t.n > 0 {
			t.f.inFlight.Add(-t.n)
			t.f.sem.Release(t.n)
		}
	})
}

// budgeted is a response with its room, as it goes to the codec.
type budgeted struct {
	msg *discovery.DiscoveryResponse
	tok *sendToken
}

// flowCodec encodes a budgeted response into a buffer of exactly its
// size whose release gives the room back; anything else goes to gRPC's
// proto codec.
type flowCodec struct{ proto encoding.CodecV2 }

func (c flowCodec) Marshal(v any) (mem.BufferSlice, error) {
	b, ok := v.(*budgeted)
	if !ok {
		return c.proto.Marshal(v)
	}
	b.tok.encoded.Store(true)
	// At least gRPC's pooling threshold: a smaller buffer would be
	// wrapped without a pool, and never give its room back.
	capacity := max(b.tok.size, 1)
	for mem.IsBelowBufferPoolingThreshold(capacity) {
		capacity *= 2
	}
	buf := make([]byte, 0, capacity)
	buf, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, b.msg)
	if err != nil {
		b.tok.release()
		return nil, fmt.Errorf("xdsserver: encode response: %w", err)
	}
	return mem.BufferSlice{mem.NewBuffer(&buf, releasePool{b.tok})}, nil
}

func (c flowCodec) Unmarshal(data mem.BufferSlice, v any) error { return c.proto.Unmarshal(data, v) }
func (c flowCodec) Name() string                                { return c.proto.Name() }

// releasePool is the "pool" of one response's buffer: gRPC puts the
// buffer back when it has written it or dropped it, which gives the
// room back. The buffer itself is left to the garbage collector.
type releasePool struct{ tok *sendToken }

func (p releasePool) Get(n int) *[]byte { b := make([]byte, n); return &b }
func (p releasePool) Put(*[]byte)       { p.tok.release() }

func peerOf(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok {
		return p.Addr.String()
	}
	return ""
}
