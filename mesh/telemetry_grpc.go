package mesh

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/telemetry"
)

// startServerGRPC starts a served RPC's record; nil when rec is.
func startServerGRPC(rec *telemetry.Recorder, ctx context.Context, method string) *telemetry.Request {
	if rec == nil {
		return nil
	}
	var certs []*x509.Certificate
	if p, ok := peer.FromContext(ctx); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
			certs = ti.State.PeerCertificates
		}
	}
	return rec.StartServer(ctx, telemetry.GRPC, "POST", method, telemetry.IncomingCarrier(ctx), certs)
}

// unaryTraced serves a unary RPC under its record: refused, or handled
// under the request's span.
func (n *nativeGRPC) unaryTraced(tr *telemetry.Request, ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if err := n.authorize(ctx, info.FullMethod, tr); err != nil {
		tr.End(200, status.Code(err))
		return nil, err
	}
	tr.AddBytes(messageSize(req), 0)
	resp, err := h(tr.Context(), req)
	if err == nil {
		tr.AddBytes(0, messageSize(resp))
	}
	tr.End(200, status.Code(err))
	return resp, err
}

// streamTraced serves a stream under its record.
func (n *nativeGRPC) streamTraced(tr *telemetry.Request, srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if err := n.authorize(ss.Context(), info.FullMethod, tr); err != nil {
		tr.End(200, status.Code(err))
		return err
	}
	err := h(srv, &tracedServerStream{ServerStream: ss, tr: tr})
	tr.End(200, status.Code(err))
	return err
}

// tracedServerStream gives the handler the request's span and counts
// the messages' bytes.
type tracedServerStream struct {
	grpc.ServerStream
	tr *telemetry.Request
}

func (s *tracedServerStream) Context() context.Context { return s.tr.Context() }

func (s *tracedServerStream) SendMsg(m any) error {
	err := s.ServerStream.SendMsg(m)
	if err == nil {
		s.tr.AddBytes(0, messageSize(m))
	}
	return err
}

func (s *tracedServerStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil {
		s.tr.AddBytes(messageSize(m), 0)
	}
	return err
}

// messageSize is a message's encoded size; 0 for one that is not a
// protocol buffer.
func messageSize(m any) int64 {
	if pm, ok := m.(proto.Message); ok {
		return int64(proto.Size(pm))
	}
	return 0
}
