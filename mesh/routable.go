package mesh

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/meshlet/meshlet/internal/wire"
)

// WaitRoutable waits until calls to target can be routed: the control
// plane has its host, with routes, and every cluster those routes send to
// has at least one healthy endpoint. target is what Dial and the HTTP
// client take: "reviews:9080", "reviews.prod:9080",
// "reviews.prod.svc.cluster.local:9080".
//
// It waits as long as ctx allows, also for a host the control plane does
// not have (its servers may not have registered yet). When ctx ends first,
// the error says what is still missing: the host (it wraps
// ErrUnknownHost), or a cluster, by name and subset, that has no endpoint
// (it wraps balancer.ErrNoEndpoints); and it wraps ctx's error.
//
// A service that waits for its dependencies before it serves calls it
// once per target at start. Calls themselves need no such wait: they wait
// for what the control plane has not answered yet (see ConfigWait).
func (m *Mesh) WaitRoutable(ctx context.Context, target string) error {
	name, err := m.listenerName(target)
	if err != nil {
		return err
	}
	core, err := m.dataplane(ctx)
	if err != nil {
		return err
	}
	return core.Host(name).WaitRoutable(ctx, target)
}

// listenerName returns the client Listener's name for a target: the fully
// qualified host and the port.
func (m *Mesh) listenerName(target string) (string, error) {
	if name, ok := strings.CutPrefix(target, "xds:///"); ok {
		return name, nil
	}
	host, port, err := net.SplitHostPort(target)
	if err != nil || port == "" {
		return "", fmt.Errorf("%w: %q (use host:port, as in reviews:9080)", ErrNoPort, target)
	}
	return net.JoinHostPort(wire.QualifyHost(host, m.opts.namespace), port), nil
}
