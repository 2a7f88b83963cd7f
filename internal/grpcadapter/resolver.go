package grpcadapter

import (
	"context"

	"google.golang.org/grpc/attributes"
	"google.golang.org/grpc/resolver"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/policy"
	mresolver "github.com/meshlet/meshlet/resolver"
)

// resolverBuilder builds the "meshlet" scheme's resolvers for one mesh.
type resolverBuilder struct{ a *Adapter }

func (b *resolverBuilder) Scheme() string { return Scheme }

func (b *resolverBuilder) Build(t resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	name, err := b.a.cfg.ListenerName(t.Endpoint())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &hostResolver{a: b.a, name: name, cc: cc, cancel: cancel, done: make(chan struct{})}
	go r.run(ctx)
	return r, nil
}

// hostResolver follows one host through the data plane and gives gRPC
// the endpoints of every cluster its routes send to.
type hostResolver struct {
	a      *Adapter
	name   string
	cc     resolver.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
}

// upstream is an address's cluster and TLS settings, as an attribute the
// credentials and the LB policy read.
type upstream struct {
	cluster string
	tls     *mresolver.UpstreamTLS
	tlsKey  string
	dc      *dataplane.Cluster // whose connection slots its SubConns take
	conns   policy.ConnLifetime
}

type upstreamKey struct{}

func upstreamOf(attrs *attributes.Attributes) *upstream {
	u, _ := attrs.Value(upstreamKey{}).(*upstream)
	return u
}

func (r *hostResolver) run(ctx context.Context) {
	defer close(r.done)
	core, err := r.a.cfg.Core(ctx)
	if err != nil {
		if ctx.Err() == nil {
			r.cc.ReportError(err)
		}
		return
	}
	h := core.Host(r.name)
	var last *dataplane.HostState
	for {
		changed := core.Changes()
		if st := h.State(); st != last && st.Routes != nil {
			last = st
			// gRPC has the addresses; the routes in them are the
			// interceptor's to read.
			r.cc.UpdateState(resolver.State{Addresses: addresses(st)})
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// addresses are one per cluster and endpoint: the same endpoint in two
// clusters is two connections, as in Envoy, each with its cluster's TLS.
func addresses(st *dataplane.HostState) []resolver.Address {
	var out []resolver.Address
	for _, cl := range st.Clusters {
		tls, key := cl.TLS()
		u := &upstream{cluster: cl.Name(), tls: tls, tlsKey: key, dc: cl, conns: cl.ConnLifetime()}
		attrs := attributes.New(upstreamKey{}, u)
		for _, ep := range cl.Endpoints() {
			if ep.Unhealthy {
				continue // never picked: no connection for it (draining, say)
			}
			out = append(out, resolver.Address{Addr: ep.Address, Attributes: attrs})
		}
	}
	return out
}

func (r *hostResolver) ResolveNow(resolver.ResolveNowOptions) {}

func (r *hostResolver) Close() {
	r.cancel()
	<-r.done
}
