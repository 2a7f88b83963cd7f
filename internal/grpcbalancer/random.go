// Package grpcbalancer holds the gRPC load-balancing policies that meshlet
// adds to gRPC-Go, for DestinationRule settings gRPC-Go has no policy for.
// Importing it registers them.
package grpcbalancer

import (
	"math/rand/v2"

	"google.golang.org/grpc/balancer"
	"google.golang.org/grpc/balancer/endpointsharding"
	"google.golang.org/grpc/balancer/pickfirst"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/grpclog"

	"github.com/meshlet/meshlet/internal/wire"
)

var logger = grpclog.Component("meshlet-random")

func init() {
	balancer.Register(randomBuilder{})
}

type randomBuilder struct{}

func (randomBuilder) Name() string { return wire.RandomPolicy }

func (randomBuilder) Build(cc balancer.ClientConn, opts balancer.BuildOptions) balancer.Balancer {
	b := &randomBalancer{ClientConn: cc}
	// One pick_first child per endpoint, as round_robin has; only the
	// picker over them differs.
	b.child = endpointsharding.NewBalancer(b, opts, balancer.Get(pickfirst.Name).Build, endpointsharding.Options{})
	return b
}

// randomBalancer embeds the parent ClientConn to intercept the children's
// aggregated state and replace its picker.
type randomBalancer struct {
	balancer.ClientConn
	child balancer.Balancer
}

func (b *randomBalancer) UpdateClientConnState(s balancer.ClientConnState) error {
	return b.child.UpdateClientConnState(balancer.ClientConnState{
		ResolverState: pickfirst.EnableHealthListener(s.ResolverState),
	})
}

func (b *randomBalancer) ResolverError(err error) { b.child.ResolverError(err) }

func (b *randomBalancer) UpdateSubConnState(sc balancer.SubConn, s balancer.SubConnState) {
	logger.Errorf("UpdateSubConnState(%v, %+v) called unexpectedly", sc, s)
}

func (b *randomBalancer) ExitIdle() { b.child.ExitIdle() }

func (b *randomBalancer) Close() { b.child.Close() }

// UpdateState picks uniformly among the ready endpoints. With none ready,
// the children's own state and picker (which queue or fail RPCs) are passed
// on as they are.
func (b *randomBalancer) UpdateState(s balancer.State) {
	var ready []balancer.Picker
	for _, c := range endpointsharding.ChildStatesFromPicker(s.Picker) {
		if c.State.ConnectivityState == connectivity.Ready {
			ready = append(ready, c.State.Picker)
		}
	}
	if len(ready) == 0 {
		b.ClientConn.UpdateState(s)
		return
	}
	b.ClientConn.UpdateState(balancer.State{ConnectivityState: connectivity.Ready, Picker: randomPicker(ready)})
}

type randomPicker []balancer.Picker

// Pick does not block: it delegates to a ready endpoint's picker.
func (p randomPicker) Pick(info balancer.PickInfo) (balancer.PickResult, error) {
	return p[rand.IntN(len(p))].Pick(info)
}
