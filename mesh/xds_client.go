package mesh

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	"github.com/meshlet/meshlet/resolver"
)

// xdsClient returns meshlet's own xDS client, which HTTP clients and
// servers use, connecting it on first use: gRPC-only workloads never open
// it.
func (m *Mesh) xdsClient(ctx context.Context) (*resolver.Client, error) {
	m.rcMu.Lock()
	defer m.rcMu.Unlock()
	if m.rc != nil {
		return m.rc, nil
	}
	o := m.opts
	c, err := resolver.New(ctx,
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
	if err != nil {
		return nil, fmt.Errorf("mesh: xds client: %w", err)
	}
	m.rc = c
	return c, nil
}
