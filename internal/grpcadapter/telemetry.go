package grpcadapter

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/telemetry"
)

// messageSize is a message's encoded size, for the byte metrics; 0 for
// a message that is not a protocol buffer.
func messageSize(m any) int64 {
	if pm, ok := m.(proto.Message); ok {
		return int64(proto.Size(pm))
	}
	return 0
}

// faultFlags records the fault a call met: a delay, and an abort when
// err is its status.
func faultFlags(tr *telemetry.Request, call *dataplane.Call, err error) {
	if call.Delayed() {
		tr.Flag(telemetry.FlagFaultDelay, "")
	}
	if err != nil && status.Code(err) != codes.DeadlineExceeded && status.Code(err) != codes.Canceled {
		tr.Flag(telemetry.FlagFaultAbort, status.Convert(err).Message())
	}
}

// waitFlags records why a call's cluster could not take it.
func waitFlags(tr *telemetry.Request, ctx context.Context, err error) {
	if ctx.Err() != nil {
		tr.Flag(telemetry.FlagUpstreamTimeout, status.Convert(err).Message())
		return
	}
	tr.Flag(telemetry.FlagNoHealthyUpstream, status.Convert(err).Message())
}

// endRefused ends the record of a call that never left: the reason is
// its error.
func endRefused(tr *telemetry.Request, err error) {
	if tr == nil {
		return
	}
	if !tr.Refused() {
		tr.Flag(0, status.Convert(err).Message())
	}
	tr.End(200, status.Code(err))
}

// end ends the call's record with err, flagging how the mesh, rather
// than the server, ended it.
func (cs *callState) end(err error) {
	tr := cs.tel
	if tr == nil {
		return
	}
	if err != nil && !tr.Refused() {
		cs.mu.Lock()
		answered := cs.answered
		cs.mu.Unlock()
		noEndpoints := cs.noEndpoints.Load()
		code := status.Code(err)
		switch {
		case errors.Is(err, policy.ErrCircuitOpen):
			tr.Flag(telemetry.FlagUpstreamOverflow, err.Error())
		case code == codes.Canceled || (code == codes.DeadlineExceeded && cs.parentDone()):
			tr.Flag(telemetry.FlagDownstreamCancel, "")
		case code == codes.DeadlineExceeded:
			tr.Flag(telemetry.FlagUpstreamTimeout, "upstream request timeout")
		case errors.Is(err, balancer.ErrNoEndpoints) || noEndpoints:
			tr.Flag(telemetry.FlagNoHealthyUpstream, status.Convert(err).Message())
		case code == codes.Unavailable && !answered:
			tr.Flag(telemetry.FlagUpstreamConnect, status.Convert(err).Message())
		}
	}
	tr.End(200, status.Code(err))
}

// parentDone reports whether the caller's context, rather than the
// route's timeout, ended the call.
func (cs *callState) parentDone() bool {
	return cs.tel.Context().Err() != nil
}
