// Package registration makes Register streams as meshlet servers do: each
// on its own connection with its service account's SVID, NOT_SERVING then
// SERVING; a clean CloseSend to deregister.
package registration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/bench/internal/controlchannel"
	"github.com/meshlet/meshlet/bench/internal/parallel"
	"github.com/meshlet/meshlet/internal/registrypb"
)

// Registration is one open Register stream, on its own connection, as a
// serving meshlet server holds it.
type Registration struct {
	// Took is how long Register took: dialing, both answers.
	Took time.Duration

	cc     *grpc.ClientConn
	stream registrypb.Registry_RegisterClient
	cancel context.CancelFunc // ends the stream as a dead connection would
}

// Register does what mesh does for a server that starts serving: it opens
// the stream, registers inst NOT_SERVING, and once the control plane
// answered, turns it SERVING and waits for that answer too. ctx bounds
// only the registering; the stream lives until Close. The connection has
// the identity of the instance's service account.
func Register(ctx context.Context, ch *controlchannel.Channel, inst *registrypb.Instance) (*Registration, error) {
	start := time.Now()
	cc, err := ch.Dial(inst.GetServiceAccount())
	if err != nil {
		return nil, fmt.Errorf("dial control plane %s: %w", ch.Addr(), err)
	}
	// The stream has its own context, as in mesh: cancelling it looks like
	// a dead connection to the control plane. A clean end is CloseSend.
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	r := &Registration{cc: cc, cancel: cancel}
	fail := func(err error) (*Registration, error) {
		cancel()
		cc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("register %s: %w", inst.GetId(), err)
	}
	r.stream, err = registrypb.NewRegistryClient(cc).Register(sctx)
	if err != nil {
		return fail(err)
	}
	for _, req := range []*registrypb.RegisterRequest{
		{Instance: inst, State: registrypb.State_NOT_SERVING},
		{State: registrypb.State_SERVING},
	} {
		if err := r.stream.Send(req); err != nil {
			return fail(err)
		}
		resp, err := r.stream.Recv()
		if err != nil {
			return fail(err)
		}
		if resp.GetState() != req.GetState() {
			return fail(fmt.Errorf("control plane applied %v, want %v", resp.GetState(), req.GetState()))
		}
	}
	r.Took = time.Since(start)
	return r, nil
}

// Close deregisters cleanly, as a stopping server does: CloseSend, then
// wait (up to timeout) for the control plane to end the stream, which it
// does after removing the instance.
func (r *Registration) Close(timeout time.Duration) error {
	defer r.cc.Close()
	defer r.cancel()
	if err := r.stream.CloseSend(); err != nil {
		return err
	}
	t := time.AfterFunc(timeout, r.cancel)
	defer t.Stop()
	for {
		if _, err := r.stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// RegisterAll registers insts, at most concurrency at a time, each as
// soon as a worker is free. On the first error it closes what it
// registered and returns that error.
func RegisterAll(ctx context.Context, ch *controlchannel.Channel, insts []*registrypb.Instance, concurrency int) ([]*Registration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	regs := make([]*Registration, len(insts))
	err := parallel.ForEach(ctx, len(insts), concurrency, func(i int) error {
		r, err := Register(ctx, ch, insts[i])
		if err != nil {
			cancel() // the registrations under way give up too
		}
		regs[i] = r
		return err
	})
	if err != nil {
		CloseAll(regs, concurrency, time.Second)
		return nil, err
	}
	return regs, nil
}

// CloseAll closes every registration (nil ones are skipped), at most
// concurrency at a time, and returns the first error.
func CloseAll(regs []*Registration, concurrency int, timeout time.Duration) error {
	return parallel.ForEach(context.Background(), len(regs), concurrency, func(i int) error {
		if regs[i] == nil {
			return nil
		}
		return regs[i].Close(timeout)
	})
}
