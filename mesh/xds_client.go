package mesh

import (
	"context"
	"fmt"
	"sync"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
)

// xdsConn is meshlet's own xDS client, connected once, in the background,
// for the mesh's life.
type xdsConn struct {
	once   sync.Once
	ready  chan struct{} // closed once rc or err is set
	cancel context.CancelFunc
	done   chan struct{} // closed when the connecting goroutine returns
	rc     *resolver.Client
	err    error
	core   *dataplane.Core
}

// startXDSClient starts connecting meshlet's own xDS client, which HTTP
// clients, HTTP and gRPC servers (but gRPC-Go's xDS server, which has its
// own), the gRPC interceptors and WaitRoutable use. It does not block.
func (m *Mesh) startXDSClient() {
	m.xds.once.Do(func() {
		m.xds.ready, m.xds.done = make(chan struct{}), make(chan struct{})
		m.mu.Lock()
		closed := m.closed
		m.mu.Unlock()
		if closed {
			m.xds.err = errMeshClosed
			close(m.xds.ready)
			close(m.xds.done)
			return
		}
		// It keeps trying until it connects or the mesh closes: callers
		// wait for it within their own contexts.
		ctx, cancel := context.WithCancel(context.Background())
		m.xds.cancel = cancel
		go func() {
			defer close(m.xds.done)
			rc, err := m.newXDSClient(ctx)
			if err == nil {
				m.xds.core = dataplane.New(dataplane.Config{Client: rc, Locality: m.opts.locality, Waits: m.wait.waits(), ControlPlane: m.opts.controlPlane, Log: m.log})
			}
			m.xds.rc, m.xds.err = rc, err
			close(m.xds.ready)
		}()
	})
}

// xdsClient returns meshlet's own xDS client, connecting it on first use,
// once it is connected, or an error when ctx ends first.
func (m *Mesh) xdsClient(ctx context.Context) (*resolver.Client, error) {
	m.startXDSClient()
	select {
	case <-m.xds.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("mesh: xds client: the control plane at %s did not answer: %w", m.opts.controlPlane, ctx.Err())
	}
	if m.xds.err != nil {
		return nil, fmt.Errorf("mesh: xds client: %w", m.xds.err)
	}
	return m.xds.rc, nil
}

// dataplane returns the mesh's data plane, once the xDS client is
// connected.
func (m *Mesh) dataplane(ctx context.Context) (*dataplane.Core, error) {
	if _, err := m.xdsClient(ctx); err != nil {
		return nil, err
	}
	return m.xds.core, nil
}

// closeXDSClient stops connecting, or closes the connected client.
func (m *Mesh) closeXDSClient() {
	m.xds.once.Do(func() { // none started: none will be
		m.xds.err = errMeshClosed
		m.xds.ready, m.xds.done = make(chan struct{}), make(chan struct{})
		close(m.xds.ready)
		close(m.xds.done)
	})
	if m.xds.cancel == nil {
		return
	}
	m.xds.cancel()
	<-m.xds.done
	if m.xds.core != nil {
		m.xds.core.Close()
	}
	if m.xds.rc != nil {
		m.xds.rc.Close()
	}
}

func (m *Mesh) newXDSClient(ctx context.Context) (*resolver.Client, error) {
	o := m.opts
	return resolver.New(ctx,
		resolver.WithServers(o.controlPlane),
		resolver.WithLogger(m.log),
		resolver.WithDialOptions(grpc.WithTransportCredentials(m.cpCredentials())),
		resolver.WithNode(resolver.Node{
			ID:             m.nodeID,
			Cluster:        o.service + "." + o.namespace,
			Namespace:      o.namespace,
			ServiceAccount: o.serviceAccount,
			WorkloadName:   o.service,
			Labels:         o.labels,
			Locality:       o.locality,
		}))
}
