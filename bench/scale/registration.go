//go:build linux

package main

// The Register streams of the registration churn, made as
// bench/registrations makes them (and as mesh does for a server that
// starts and stops serving): each on its own connection with its service's
// SVID, NOT_SERVING then SERVING; a clean CloseSend to deregister.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
)

// instance returns the registration of endpoint e (an address of 127/8,
// so that the control plane takes it as this host's own) in service k.
func instance(k int, e endpoint) *registrypb.Instance {
	svc := serviceName(k)
	return &registrypb.Instance{
		// The shape of mesh's IDs: node ID, then the listening address.
		Id:             fmt.Sprintf("meshlet~%s-%s.%s~%s.%s/%s:%d", svc, e.ip, benchNamespace, benchNamespace, wire.DomainSuffix, e.ip, e.port),
		Service:        svc,
		Namespace:      benchNamespace,
		ServiceAccount: svc,
		Address:        e.ip,
		Port:           uint32(e.port),
		ServicePort:    benchServicePort,
		Protocol:       "GRPC",
		Labels:         map[string]string{"app": svc},
		Locality:       &registrypb.Locality{},
	}
}

// registration is one open Register stream, on its own connection, as a
// serving meshlet server holds it.
type registration struct {
	cc     *grpc.ClientConn
	stream registrypb.Registry_RegisterClient
	cancel context.CancelFunc // ends the stream as a dead connection would
}

// register opens the stream, registers inst NOT_SERVING, and once the
// control plane answered, turns it SERVING and waits for that answer too.
// ctx bounds only the registering; the stream lives until close.
func register(ctx context.Context, ch *controlChannel, inst *registrypb.Instance) (*registration, error) {
	cc, err := ch.dial(inst.GetServiceAccount())
	if err != nil {
		return nil, fmt.Errorf("dial control plane %s: %w", ch.addr, err)
	}
	// The stream has its own context, as in mesh: cancelling it looks like
	// a dead connection to the control plane. A clean end is CloseSend.
	sctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	r := &registration{cc: cc, cancel: cancel}
	fail := func(err error) (*registration, error) {
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
	return r, nil
}

// close deregisters cleanly, as a stopping server does: CloseSend, then
// wait (up to timeout) for the control plane to end the stream, which it
// does after removing the instance.
func (r *registration) close(timeout time.Duration) error {
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

// registerAll registers insts, at most concurrency at a time. On the first
// error it closes what it registered and returns that error.
func registerAll(ctx context.Context, ch *controlChannel, insts []*registrypb.Instance, concurrency int) ([]*registration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	regs := make([]*registration, len(insts))
	err := forEach(ctx, len(insts), concurrency, func(i int) error {
		r, err := register(ctx, ch, insts[i])
		regs[i] = r
		return err
	})
	if err != nil {
		closeAll(regs, concurrency, time.Second)
		return nil, err
	}
	return regs, nil
}

// closeAll closes every registration (nil ones are skipped), at most
// concurrency at a time, and returns the first error.
func closeAll(regs []*registration, concurrency int, timeout time.Duration) error {
	return forEach(context.Background(), len(regs), concurrency, func(i int) error {
		if regs[i] == nil {
			return nil
		}
		return regs[i].close(timeout)
	})
}

// forEach calls f(0..n-1), at most concurrency at a time, until the first
// error or the end of ctx, and returns the first error.
func forEach(ctx context.Context, n, concurrency int, f func(i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range max(1, min(concurrency, n)) {
		wg.Go(func() {
			for i := range next {
				if err := f(i); err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
				}
			}
		})
	}
feed:
	for i := range n {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	return firstErr
}
