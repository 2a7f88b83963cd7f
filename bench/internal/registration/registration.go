// Package registration makes Register streams as meshlet servers do: each
// on its own connection with its service account's SVID, NOT_SERVING then
// SERVING; a clean CloseSend to deregister. The connection is dialled
// with the registration (Register), or beforehand (Connect), as mesh.New
// dials it when the workload starts, before any server registers.
package registration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/meshlet/meshlet/bench/internal/controlchannel"
	"github.com/meshlet/meshlet/bench/internal/parallel"
	"github.com/meshlet/meshlet/internal/registrypb"
)

// Registration is one open Register stream, on its own connection, as a
// serving meshlet server holds it.
type Registration struct {
	// Took is how long Register took: both answers, and dialing when the
	// connection was not made beforehand (Connect).
	Took time.Duration

	cc     *grpc.ClientConn
	stream registrypb.Registry_RegisterClient
	cancel context.CancelFunc // ends the stream as a dead connection would
}

// Conn is a connection to the control plane that is up, with the
// identity of one service account: what mesh.New leaves a workload with
// (it dials and calls the health service before it returns), before any
// of its servers registers.
type Conn struct{ cc *grpc.ClientConn }

// Connect dials the control plane as sa and calls its health service, as
// mesh.New does: the TLS handshake belongs to the workload's start, not
// to its servers' registrations.
func Connect(ctx context.Context, ch *controlchannel.Channel, sa string) (*Conn, error) {
	cc, err := ch.Dial(sa)
	if err != nil {
		return nil, fmt.Errorf("dial control plane %s: %w", ch.Addr(), err)
	}
	// mesh.New calls the health service before it returns: the
	// connection is then up on both ends.
	if _, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true)); err != nil {
		cc.Close()
		return nil, fmt.Errorf("connect to control plane %s as %s: health check: %w", ch.Addr(), sa, err)
	}
	return &Conn{cc: cc}, nil
}

// Close closes a connection no registration took.
func (c *Conn) Close() error { return c.cc.Close() }

// Register does what mesh does for a server that starts serving: it opens
// the stream, registers inst NOT_SERVING, and once the control plane
// answered, turns it SERVING and waits for that answer too. ctx bounds
// only the registering; the stream lives until Close. The connection,
// dialled here, has the identity of the instance's service account.
func Register(ctx context.Context, ch *controlchannel.Channel, inst *registrypb.Instance) (*Registration, error) {
	start := time.Now()
	cc, err := ch.Dial(inst.GetServiceAccount())
	if err != nil {
		return nil, fmt.Errorf("dial control plane %s: %w", ch.Addr(), err)
	}
	r, err := (&Conn{cc: cc}).Register(ctx, inst)
	if err != nil {
		return nil, err
	}
	r.Took = time.Since(start)
	return r, nil
}

// Register registers inst over c, which the registration then owns, as
// mesh does over the connection mesh.New made: Took counts the two
// answers only.
func (c *Conn) Register(ctx context.Context, inst *registrypb.Instance) (*Registration, error) {
	start := time.Now()
	// The stream has its own context, as in mesh: cancelling it looks like
	// a dead connection to the control plane. A clean end is CloseSend.
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	r := &Registration{cc: c.cc, cancel: cancel}
	fail := func(err error) (*Registration, error) {
		cancel()
		c.cc.Close()
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("register %s: %w", inst.GetId(), err)
	}
	var err error
	r.stream, err = registrypb.NewRegistryClient(c.cc).Register(sctx)
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
	return registerEach(ctx, len(insts), concurrency, func(ctx context.Context, i int) (*Registration, error) {
		return Register(ctx, ch, insts[i])
	})
}

// registerEach makes n registrations with register, at most concurrency
// at a time, each as soon as a worker is free. On the first error the
// registrations under way give up too, and those made are closed.
func registerEach(ctx context.Context, n, concurrency int, register func(ctx context.Context, i int) (*Registration, error)) ([]*Registration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	regs := make([]*Registration, n)
	err := parallel.ForEach(ctx, n, concurrency, func(i int) error {
		r, err := register(ctx, i)
		if err != nil {
			cancel()
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

// ConnectAll makes a ready connection for each of insts, with its
// service account's identity, at most concurrency at a time. On the first
// error it closes those it made and returns that error.
func ConnectAll(ctx context.Context, ch *controlchannel.Channel, insts []*registrypb.Instance, concurrency int) ([]*Conn, error) {
	conns := make([]*Conn, len(insts))
	err := parallel.ForEach(ctx, len(insts), concurrency, func(i int) error {
		c, err := Connect(ctx, ch, insts[i].GetServiceAccount())
		conns[i] = c
		return err
	})
	if err != nil {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
		return nil, err
	}
	return conns, nil
}

// RegisterOver registers insts[i] over conns[i], at most concurrency at a
// time, each as soon as a worker is free. Each registration owns its
// connection. On the first error it closes what it registered and every
// connection not taken, and returns that error.
func RegisterOver(ctx context.Context, conns []*Conn, insts []*registrypb.Instance, concurrency int) ([]*Registration, error) {
	taken := make([]bool, len(insts))
	regs, err := registerEach(ctx, len(insts), concurrency, func(ctx context.Context, i int) (*Registration, error) {
		taken[i] = true
		return conns[i].Register(ctx, insts[i])
	})
	if err != nil {
		for i, c := range conns {
			if !taken[i] {
				c.Close()
			}
		}
	}
	return regs, err
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
