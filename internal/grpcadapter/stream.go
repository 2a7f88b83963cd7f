package grpcadapter

import (
	"context"
	"errors"
	"io"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/policy"
)

// retryBufferLimit bounds the request messages a stream keeps to replay
// on a retry: gRPC-Go's default per-RPC retry buffer (256 KiB), counted
// here in messages of unknown size as at most 64.
const retryBufferLimit = 64

func (a *Adapter) stream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	cs, cancel, err := a.plan(ctx, cc, method, opts)
	if err != nil {
		return nil, err
	}
	if cs == nil {
		return streamer(ctx, desc, cc, method, opts...)
	}
	rs := &retryStream{cs: cs, cancel: cancel, desc: desc, cc: cc, method: method, streamer: streamer, opts: opts, ctx: context.WithValue(cs.ctx, callKey{}, cs)}
	for replans := 0; ; {
		// A stream that could not start sent nothing: it may be retried
		// freely.
		s, err := rs.start()
		if err == nil {
			rs.cur = s
			return rs, nil
		}
		if errors.Is(err, policy.ErrCircuitOpen) {
			cancel()
			cs.end(err)
			return nil, err
		}
		if replans < maxReplans && cs.takeReplan() {
			replans++
			continue
		}
		if !cs.call.CanRetry(cs.ctx, cs.take(err)) || !cs.call.Backoff(cs.ctx) {
			cancel()
			cs.end(err)
			return nil, err
		}
	}
}

// retryStream is a stream that is retried, on another endpoint, while no
// response message has come: the messages sent so far are sent again.
// Once a message came, or the caller read the headers, or more was sent
// than it keeps, the stream is committed, as gRPC-Go's retries are.
type retryStream struct {
	cs       *callState
	cancel   context.CancelFunc
	ctx      context.Context
	desc     *grpc.StreamDesc
	cc       *grpc.ClientConn
	method   string
	streamer grpc.Streamer
	opts     []grpc.CallOption

	mu        sync.Mutex // SendMsg and RecvMsg may run on two goroutines
	cur       grpc.ClientStream
	sent      []any
	closed    bool // CloseSend was called
	committed bool
	finished  bool
	refused   error // a retry's refusal by the cluster's circuit breaking
}

func (s *retryStream) stream() grpc.ClientStream {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

func (s *retryStream) commit() {
	s.mu.Lock()
	s.committed, s.sent = true, nil
	s.mu.Unlock()
}

func (s *retryStream) Header() (metadata.MD, error) {
	s.commit() // the caller saw this attempt's headers
	return s.stream().Header()
}

func (s *retryStream) Trailer() metadata.MD { return s.stream().Trailer() }

func (s *retryStream) Context() context.Context { return s.stream().Context() }

func (s *retryStream) CloseSend() error {
	s.mu.Lock()
	s.closed = true
	cur := s.cur
	s.mu.Unlock()
	return cur.CloseSend()
}

func (s *retryStream) SendMsg(m any) error {
	s.mu.Lock()
	if !s.committed {
		if len(s.sent) == retryBufferLimit {
			s.committed, s.sent = true, nil
		} else {
			s.sent = append(s.sent, m)
		}
	}
	cur, committed := s.cur, s.committed || s.finished
	s.mu.Unlock()
	err := cur.SendMsg(m)
	if s.cs.tel != nil && err == nil {
		s.cs.tel.AddBytes(messageSize(m), 0)
	}
	if err != io.EOF || committed {
		return err
	}
	// The attempt ended before this message went: it is kept for a retry,
	// and RecvMsg says how the stream ended. An io.EOF here would have the
	// caller stop sending, and a retry replay only part of the stream.
	return nil
}

func (s *retryStream) RecvMsg(m any) error {
	for {
		cur := s.stream()
		err := cur.RecvMsg(m)
		if err == nil {
			if s.cs.tel != nil {
				s.cs.tel.AddBytes(0, messageSize(m))
			}
			if !s.desc.ServerStreams {
				s.finish(nil)
			}
			s.commit()
			return nil
		}
		if !s.retry(err) {
			if s.refused != nil {
				err = s.refused
			}
			if err == io.EOF {
				s.finish(nil)
			} else {
				s.finish(err)
			}
			return err
		}
	}
}

// retry starts the stream again on another endpoint if it is not
// committed and the policy retries how it ended.
func (s *retryStream) retry(err error) bool {
	s.mu.Lock()
	committed := s.committed
	s.mu.Unlock()
	call := s.cs.call
	o := s.cs.take(err)
	if err != io.EOF && o.IsGRPC && o.Err == nil && o.GRPC == codes.OK {
		// gRPC-Go ends an attempt whose SendMsg met the end of the stream
		// as a success (csAttempt.finish of io.EOF), before RecvMsg has its
		// status: the attempt came to err.
		o.GRPC = status.Code(err)
	}
	if committed || !call.CanRetry(s.cs.ctx, o) || !call.Backoff(s.cs.ctx) {
		return false
	}
	for replans := 0; ; {
		next, err := s.start()
		if err != nil {
			if errors.Is(err, policy.ErrCircuitOpen) {
				s.refused = err
				return false
			}
			if replans < maxReplans && s.cs.takeReplan() {
				replans++
				call = s.cs.call
				continue
			}
			if call.CanRetry(s.cs.ctx, s.cs.take(err)) && call.Backoff(s.cs.ctx) {
				continue
			}
			return false
		}
		s.mu.Lock()
		s.cur = next
		sent, closed := s.sent, s.closed
		s.mu.Unlock()
		for _, m := range sent {
			if next.SendMsg(m) != nil {
				break // RecvMsg says why
			}
		}
		if closed {
			next.CloseSend()
		}
		return true
	}
}

// finish ends the stream, which came to err (nil: OK).
func (s *retryStream) finish(err error) {
	s.mu.Lock()
	done := s.finished
	s.finished = true
	s.mu.Unlock()
	if !done {
		s.cs.end(err)
		s.cancel()
	}
}
