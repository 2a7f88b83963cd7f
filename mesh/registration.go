package mesh

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/meshlet/meshlet/internal/registrypb"
)

// registration keeps one listening address registered with the control
// plane for as long as it serves, across control-plane restarts.
type registration struct {
	m    *Mesh
	inst *registrypb.Instance

	ctx    context.Context // ends when the registration should go away
	cancel context.CancelFunc
	done   chan struct{}

	mu        sync.Mutex
	state     registrypb.State
	changed   chan struct{} // has a value when state changed
	connected bool
	drained   chan struct{} // closed when the control plane says drained
	once      sync.Once
}

func newRegistration(m *Mesh, inst *registrypb.Instance) *registration {
	ctx, cancel := context.WithCancel(context.Background())
	return &registration{
		m: m, inst: inst, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		state: registrypb.State_NOT_SERVING, changed: make(chan struct{}, 1), drained: make(chan struct{}),
	}
}

func (r *registration) start() { go r.run() }

// setState changes the state the control plane is told. Once draining, the
// registration stays draining.
func (r *registration) setState(s registrypb.State) {
	r.mu.Lock()
	if r.state == registrypb.State_DRAINING || r.state == s {
		r.mu.Unlock()
		return
	}
	r.state = s
	r.mu.Unlock()
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

func (r *registration) currentState() registrypb.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state
}

// drain takes the endpoint out of EDS and waits until the control plane
// says callers acknowledged it, or ctx ends. Without a control plane there
// is nobody to tell, so it returns at once.
func (r *registration) drain(ctx context.Context) {
	r.setState(registrypb.State_DRAINING)
	r.mu.Lock()
	connected := r.connected
	r.mu.Unlock()
	if !connected {
		return
	}
	select {
	case <-r.drained:
	case <-ctx.Done():
		r.m.log.Warn("mesh: drain timed out; stopping anyway", "address", r.inst.GetAddress(), "port", r.inst.GetPort())
	}
}

// stop deregisters cleanly, if the control plane is there, and waits for
// the registration's goroutines.
func (r *registration) stop() {
	r.cancel()
	<-r.done
}

func (r *registration) run() {
	defer close(r.done)
	const maxDelay = 2 * time.Second
	delay := 100 * time.Millisecond
	for {
		began := time.Now()
		stopped, err := r.session()
		if stopped || r.ctx.Err() != nil {
			return
		}
		if time.Since(began) > maxDelay {
			delay = 100 * time.Millisecond
		}
		r.m.log.Debug("mesh: registration stream ended; retrying", "err", err, "in", delay)
		jittered := delay/2 + rand.N(delay/2+1)
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(jittered):
		}
		delay = min(delay*2, maxDelay)
	}
}

// session runs one registration stream. It reports stopped when the
// registration ended cleanly because stop was called.
func (r *registration) session() (stopped bool, err error) {
	// The stream has its own context: cancelling it would look like a
	// dead connection to the control plane, which then keeps the
	// endpoint for its grace period. A clean end is CloseSend.
	sctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if r.ctx.Err() != nil {
		return true, nil
	}
	stream, err := r.m.registry.Register(sctx)
	if err != nil {
		return false, err
	}
	sent := r.currentState()
	if err := stream.Send(&registrypb.RegisterRequest{Instance: r.inst, State: sent}); err != nil {
		return false, err
	}

	type recv struct {
		resp *registrypb.RegisterResponse
		err  error
	}
	recvCh := make(chan recv)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			resp, err := stream.Recv()
			select {
			case recvCh <- recv{resp, err}:
			case <-sctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	defer func() {
		cancel()
		<-recvDone
	}()

	first := true
	for {
		select {
		case <-r.changed:
			if st := r.currentState(); st != sent {
				if err := stream.Send(&registrypb.RegisterRequest{State: st}); err != nil {
					return false, err
				}
				sent = st
			}
		case rv := <-recvCh:
			if rv.err != nil {
				r.setConnected(false)
				return false, rv.err
			}
			if first {
				first = false
				r.setConnected(true)
				r.m.log.Debug("mesh: registered", "service", r.inst.GetService(), "address", r.inst.GetAddress(), "port", r.inst.GetPort())
			}
			if rv.resp.GetDrained() {
				r.once.Do(func() { close(r.drained) })
			}
		case <-r.ctx.Done():
			r.setConnected(false)
			if err := stream.CloseSend(); err != nil {
				return true, nil
			}
			// Wait for the control plane to end the stream, which it
			// does after removing the endpoint.
			timeout := time.NewTimer(2 * time.Second)
			defer timeout.Stop()
			for {
				select {
				case rv := <-recvCh:
					if rv.err != nil {
						if !errors.Is(rv.err, io.EOF) {
							r.m.log.Debug("mesh: deregistration ended with an error", "err", rv.err)
						}
						return true, nil
					}
				case <-timeout.C:
					return true, nil
				}
			}
		}
	}
}

func (r *registration) setConnected(c bool) {
	r.mu.Lock()
	r.connected = c
	r.mu.Unlock()
}
