package translate

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/internal/wire"
)

// connectionPool returns the traffic policy whose connectionPool and
// retryBudget apply to one subset (nil for the cluster without a
// subset): the subset's own if it sets either, else the top level's.
func (d destRule) connectionPool(subset *networking.Subset) *networking.TrafficPolicy {
	if tp := subset.GetTrafficPolicy(); tp.GetConnectionPool() != nil || tp.GetRetryBudget() != nil {
		return tp
	}
	return d.top
}

// circuitBreakers translates connectionPool and retryBudget as istiod does
// (applyConnectionPool): one DEFAULT threshold whose limits are unlimited
// unless set, http2MaxRequests as max_requests, maxRetries as
// max_retries, tcp.maxConnections as max_connections, and the retry
// budget as retry_budget. gRPC-Go reads
// max_requests only (gRFC A32); meshlet's data plane enforces them all.
// A policy without either gets no circuit_breakers, which meshlet reads
// as no limits; istiod would send unlimited thresholds.
func circuitBreakers(tp *networking.TrafficPolicy) *clusterv3.CircuitBreakers {
	h, rb := tp.GetConnectionPool().GetHttp(), tp.GetRetryBudget()
	tcp := tp.GetConnectionPool().GetTcp()
	if h == nil && rb == nil && tcp == nil {
		return nil
	}
	limit := func(n int32) *wrapperspb.UInt32Value {
		if n > 0 {
			return wrapperspb.UInt32(uint32(n))
		}
		return wrapperspb.UInt32(math.MaxUint32)
	}
	t := &clusterv3.CircuitBreakers_Thresholds{
		Priority:           corev3.RoutingPriority_DEFAULT,
		MaxConnections:     limit(tcp.GetMaxConnections()),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        limit(h.GetHttp2MaxRequests()),
		MaxRetries:         limit(h.GetMaxRetries()),
	}
	if rb != nil {
		t.RetryBudget = &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}
		if p := rb.GetPercent(); p != nil {
			t.RetryBudget.BudgetPercent = &typev3.Percent{Value: p.GetValue()}
		}
		if n := rb.GetMinRetryConcurrency(); n > 0 {
			t.RetryBudget.MinRetryConcurrency = wrapperspb.UInt32(n)
		}
	}
	return &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
}

// ruleBreaker is the breaker a rule's annotation sets, or nil.
func ruleBreaker(dr *model.DestinationRule) *model.CircuitBreaker {
	if cb, ok := dr.CircuitBreaker(); ok {
		return &cb
	}
	return nil
}

// setBreaker puts meshlet's breaker in c's metadata, under
// wire.MetadataKey, which gRPC-Go ignores.
func setBreaker(c *clusterv3.Cluster, cb *model.CircuitBreaker) error {
	if cb == nil {
		return nil
	}
	v, err := structpb.NewStruct(map[string]any{
		wire.BreakerField: map[string]any{
			wire.BreakerConsecutiveErrors: float64(cb.ConsecutiveErrors),
			wire.BreakerOpenFor:           cb.OpenFor.String(),
		},
	})
	if err != nil {
		return err
	}
	if c.Metadata == nil {
		c.Metadata = &corev3.Metadata{}
	}
	if c.Metadata.FilterMetadata == nil {
		c.Metadata.FilterMetadata = map[string]*structpb.Struct{}
	}
	c.Metadata.FilterMetadata[wire.MetadataKey] = v
	return nil
}
