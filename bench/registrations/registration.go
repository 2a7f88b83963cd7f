//go:build linux

package main

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

// The services the registrations fill. Every instance registers service
// port benchServicePort in namespace benchNamespace.
const (
	benchNamespace   = "default"
	benchServicePort = 9080
)

// serviceName is the name of service k of the benchmark.
func serviceName(k int) string { return fmt.Sprintf("bench-%d", k) }

// clusterName is the EDS cluster of service k, as the control plane names it.
func clusterName(k int) string {
	return wire.ClusterName(benchServicePort, "", wire.ServiceHost(serviceName(k), benchNamespace))
}

// instance returns registration i of n: service i%services, and an address
// and port no other registration has (127.1.0.0/16 upward, loopback).
func instance(i, services int) *registrypb.Instance {
	svc := serviceName(i % services)
	ip := fmt.Sprintf("127.%d.%d.%d", 1+i>>16, (i>>8)&0xff, i&0xff)
	port := uint32(10000 + i%50000)
	return &registrypb.Instance{
		// The shape of mesh's IDs: node ID, then the listening address.
		Id:             fmt.Sprintf("meshlet~%s-bench%d.%s~%s.%s/%s:%d", svc, i, benchNamespace, benchNamespace, wire.DomainSuffix, ip, port),
		Service:        svc,
		Namespace:      benchNamespace,
		ServiceAccount: svc,
		Address:        ip,
		Port:           port,
		ServicePort:    benchServicePort,
		Protocol:       "GRPC",
		Labels:         map[string]string{"app": svc, "version": "v1"},
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

// register does what mesh does for a server that starts serving: it opens
// the stream, registers the instance NOT_SERVING, and once the control
// plane answered, turns it SERVING and waits for that answer too. The
// control plane answers SERVING after it has put the instance in the
// snapshot it serves. ctx bounds only the registering; the stream lives
// until close. The connection has the identity of the instance's service
// account.
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

// registerAll makes registrations 0..n-1, at most concurrency at a time,
// each one starting as soon as a worker is free. On the first error it
// closes what it registered and returns that error.
func registerAll(ctx context.Context, ch *controlChannel, n, services, concurrency int) ([]*registration, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	regs := make([]*registration, n)
	next := make(chan int)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range min(concurrency, n) {
		wg.Go(func() {
			for i := range next {
				r, err := register(ctx, ch, instance(i, services))
				if err != nil {
					errOnce.Do(func() { firstErr = err; cancel() })
					continue
				}
				regs[i] = r
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
	if firstErr == nil && ctx.Err() != nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		closeAll(regs, concurrency, time.Second)
		return nil, firstErr
	}
	return regs, nil
}

// closeAll closes every registration (nil ones are skipped), at most
// concurrency at a time, and returns the first error.
func closeAll(regs []*registration, concurrency int, timeout time.Duration) error {
	next := make(chan *registration)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	for range max(1, min(concurrency, len(regs))) {
		wg.Go(func() {
			for r := range next {
				if err := r.close(timeout); err != nil {
					errOnce.Do(func() { firstErr = err })
				}
			}
		})
	}
	for _, r := range regs {
		if r != nil {
			next <- r
		}
	}
	close(next)
	wg.Wait()
	return firstErr
}
