//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlet/meshlet/bench/internal/controlchannel"
	"github.com/meshlet/meshlet/internal/wire"
)

const (
	clusterTypeURL   = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	endpointsTypeURL = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
)

// adsClient is a -light client: one raw ADS stream on its own connection
// (the same mTLS identity as a resolver.Client's), subscribed to every
// service's Cluster and the ClusterLoadAssignment it names. It ACKs every
// response and keeps per service only the fingerprint of its healthy
// endpoints: of each ClusterLoadAssignment a response carries it reads
// only the name and the endpoints' health and addresses from the bytes
// (adsclient_wire.go), hashes them and drops them. So 1,000 of them fit in
// this process at N=10,000, and what is measured is the control plane.
// It NACKs nothing: a resource it cannot decode ends the run.
type adsClient struct {
	f      *fleet
	m      *member
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}
}

// startADSClient dials and starts client i; its stream runs until Close.
func startADSClient(ctx context.Context, f *fleet, m *member, ch *controlchannel.Channel, i int) (*adsClient, error) {
	workload := fmt.Sprintf("bench-client-%d", i)
	md, err := structpb.NewStruct(wire.NodeMetadata(benchNamespace, clientServiceAccount, workload, nil))
	if err != nil {
		return nil, err
	}
	node := &corev3.Node{
		Id:                   wire.NodeID(workload, fmt.Sprintf("%08x", i), benchNamespace),
		Metadata:             md,
		UserAgentName:        "meshlet-bench-scale",
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: "v1"},
	}
	conn, err := ch.Dial(clientServiceAccount)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	c := &adsClient{f: f, m: m, conn: conn, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		if err := c.run(sctx, node); err != nil {
			f.rejected(fmt.Errorf("light client %d: %w", i, err))
		}
	}()
	return c, nil
}

// run keeps a stream open until ctx ends. A stream the control plane
// ends (its keepalive closes a connection whose ping answer comes after
// 5 s, which happens with 1,000 clients sharing 2 cores with it) is
// opened again, as resolver.Client does, and counted; the fingerprints
// stay until the new stream's responses replace them.
func (c *adsClient) run(ctx context.Context, node *corev3.Node) error {
	for try := 0; ; try++ {
		err := c.stream(ctx, node)
		if ctx.Err() != nil {
			return nil
		}
		if try >= 20 {
			return fmt.Errorf("stream ended %d times, the last: %w", try+1, err)
		}
		c.f.reconnects.Add(1)
		t := time.NewTimer(time.Duration(100*(1+rand.IntN(10))) * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// stream opens one stream, subscribes, and handles responses until the
// stream ends.
func (c *adsClient) stream(ctx context.Context, node *corev3.Node) error {
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	f := c.f
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: clusterTypeURL, ResourceNames: f.clusterNames}); err != nil {
		return err
	}
	edsService := map[string]int{} // ClusterLoadAssignment name → service
	var (
		edsNames              []string
		edsVersion, edsNonce  string
		buf                   []byte
		errUnexpectedResource = errors.New("unexpected resource")
	)
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		f.responses.Add(1)
		f.bytes.Add(int64(proto.Size(resp)))
		switch resp.GetTypeUrl() {
		case clusterTypeURL:
			added := false
			for i, a := range resp.GetResources() {
				if a.GetTypeUrl() != clusterTypeURL {
					return fmt.Errorf("%w: resources[%d] of a Cluster response is a %q", errUnexpectedResource, i, a.GetTypeUrl())
				}
				name, eds, err := clusterEDSName(a.GetValue())
				if err != nil {
					return fmt.Errorf("cluster resources[%d]: %w", i, err)
				}
				k, ok := f.clusterIndex[string(name)]
				if !ok {
					return fmt.Errorf("%w: cluster %q", errUnexpectedResource, name)
				}
				if _, ok := edsService[string(eds)]; !ok {
					edsService[string(eds)] = k
					edsNames = append(edsNames, string(eds))
					added = true
				}
			}
			if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: clusterTypeURL, ResourceNames: f.clusterNames, VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}); err != nil {
				return err
			}
			if added {
				slices.Sort(edsNames)
				if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: endpointsTypeURL, ResourceNames: edsNames, VersionInfo: edsVersion, ResponseNonce: edsNonce}); err != nil {
					return err
				}
			}
		case endpointsTypeURL:
			for i, a := range resp.GetResources() {
				if a.GetTypeUrl() != endpointsTypeURL {
					return fmt.Errorf("%w: resources[%d] of a ClusterLoadAssignment response is a %q", errUnexpectedResource, i, a.GetTypeUrl())
				}
				var (
					name []byte
					fp   fingerprint
				)
				name, fp, buf, err = claFingerprint(a.GetValue(), buf)
				if err != nil {
					return fmt.Errorf("endpoints resources[%d] (%q): %w", i, name, err)
				}
				k, ok := edsService[string(name)]
				if !ok {
					return fmt.Errorf("%w: endpoints %q", errUnexpectedResource, name)
				}
				f.update(c.m, k, fp, time.Now())
			}
			edsVersion, edsNonce = resp.GetVersionInfo(), resp.GetNonce()
			if err := stream.Send(&discoveryv3.DiscoveryRequest{TypeUrl: endpointsTypeURL, ResourceNames: edsNames, VersionInfo: edsVersion, ResponseNonce: edsNonce}); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%w: type %q", errUnexpectedResource, resp.GetTypeUrl())
		}
	}
}

// Close ends the stream and the connection.
func (c *adsClient) Close() {
	c.cancel()
	<-c.done
	c.conn.Close()
}
