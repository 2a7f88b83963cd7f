package grpcadapter

import (
	"google.golang.org/grpc"
)

// start opens one attempt of a stream within its cluster's circuit
// breaking. The stream holds its slot while it is being opened only: a
// stream's life is the caller's, and one the caller abandons without
// reading it to the end would otherwise hold its slot for good. So
// http2MaxRequests bounds streams being opened, and the breaker counts
// streams that could not be opened.
func (s *retryStream) start() (grpc.ClientStream, error) {
	if err := s.cs.call.Admit(); err != nil {
		return nil, refusal(err)
	}
	next, err := s.streamer(s.ctx, s.desc, s.cc, s.method, s.opts...)
	o := s.cs.peek(err)
	s.cs.call.Release(o)
	return next, err
}
