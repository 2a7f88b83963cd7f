package resolver

import (
	"errors"
	"fmt"
	"math"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/policy"
)

// Envoy's defaults for a threshold's fields, and for a retry budget's.
const (
	defaultMaxRetries        = 3
	defaultMaxConnections    = 1024
	defaultMaxPending        = 1024
	defaultBudgetPercent     = 20
	defaultBudgetConcurrency = 3
)

// convertCircuitBreaking reads the circuit_breakers thresholds, which
// meshlet's data plane enforces (policy.Gate), and the breaker in the
// Cluster's meshlet metadata (policy.Breaker).
//
// A Cluster without circuit_breakers gets no limits, as under istiod,
// which always sends thresholds and makes the unset ones unlimited. A
// threshold's unset field has Envoy's default. max_pending_requests is
// not enforced by meshlet's clients (they queue no request for a
// connection), so a value other than unlimited (or unset) is refused
// rather than ignored.
func convertCircuitBreaking(c *clusterv3.Cluster, out *Cluster) error {
	for i, t := range c.GetCircuitBreakers().GetThresholds() {
		at := fmt.Sprintf("circuit_breakers.thresholds[%d]", i)
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			return fmt.Errorf("%s.priority: %v is not supported by meshlet, which has one priority (DEFAULT)", at, t.GetPriority())
		}
		if out.Limits != nil {
			return fmt.Errorf("%s: a second DEFAULT threshold", at)
		}
		// track_remaining, which istiod sets, only publishes statistics.
		if v := t.GetMaxPendingRequests(); v != nil && v.GetValue() != math.MaxUint32 {
			return fmt.Errorf("%s.max_pending_requests: %d is not enforced by meshlet's clients (leave it unset or at %d, unlimited)", at, v.GetValue(), uint32(math.MaxUint32))
		}
		l := &policy.Limits{MaxRequests: envoydefaults.MaxRequests, MaxRetries: defaultMaxRetries, MaxConnections: defaultMaxConnections}
		if v := t.GetMaxConnections(); v != nil {
			l.MaxConnections = v.GetValue()
		}
		if v := t.GetMaxRequests(); v != nil {
			l.MaxRequests = v.GetValue()
		}
		if v := t.GetMaxRetries(); v != nil {
			l.MaxRetries = v.GetValue()
		}
		if rb := t.GetRetryBudget(); rb != nil {
			b := &policy.RetryBudget{Percent: defaultBudgetPercent, MinRetryConcurrency: defaultBudgetConcurrency}
			if p := rb.GetBudgetPercent(); p != nil {
				b.Percent = p.GetValue()
			}
			if b.Percent < 0 || b.Percent > 100 || math.IsNaN(b.Percent) {
				return fmt.Errorf("%s.retry_budget.budget_percent: %v is not a percentage (0-100)", at, b.Percent)
			}
			if m := rb.GetMinRetryConcurrency(); m != nil {
				b.MinRetryConcurrency = m.GetValue()
			}
			l.Budget = b
		}
		out.Limits = l
	}
	if len(c.GetCircuitBreakers().GetPerHostThresholds()) > 0 {
		return errors.New("circuit_breakers.per_host_thresholds: not supported by meshlet")
	}
	fields := c.GetMetadata().GetFilterMetadata()[wire.MetadataKey].GetFields()
	if v, ok := fields[wire.BreakerField]; ok {
		at := fmt.Sprintf("metadata.filter_metadata[%q].%s", wire.MetadataKey, wire.BreakerField)
		s, err := convertBreaker(v)
		if err != nil {
			return fmt.Errorf("%s: %w", at, err)
		}
		out.Breaker = s
	}
	return nil
}

// convertBreaker reads the breaker's settings, a struct of
// wire.BreakerConsecutiveErrors and wire.BreakerOpenFor, both required.
func convertBreaker(v *structpb.Value) (*policy.BreakerSettings, error) {
	st := v.GetStructValue()
	if st == nil {
		return nil, errors.New("not a struct")
	}
	var s policy.BreakerSettings
	for k, f := range st.GetFields() {
		switch k {
		case wire.BreakerConsecutiveErrors:
			n, ok := f.GetKind().(*structpb.Value_NumberValue)
			if !ok || n.NumberValue < 1 || n.NumberValue > math.MaxUint32 || n.NumberValue != math.Trunc(n.NumberValue) {
				return nil, fmt.Errorf("%s: want a whole number from 1, got %v", k, f.AsInterface())
			}
			s.ConsecutiveFailures = uint32(n.NumberValue)
		case wire.BreakerOpenFor:
			d, err := time.ParseDuration(f.GetStringValue())
			if err != nil || d <= 0 {
				return nil, fmt.Errorf("%s: want a positive duration such as \"30s\", got %v", k, f.AsInterface())
			}
			s.OpenFor = d
		default:
			return nil, fmt.Errorf("unknown field %q (meshlet reads %s and %s)", k, wire.BreakerConsecutiveErrors, wire.BreakerOpenFor)
		}
	}
	if s.ConsecutiveFailures == 0 || s.OpenFor == 0 {
		return nil, fmt.Errorf("needs both %s and %s", wire.BreakerConsecutiveErrors, wire.BreakerOpenFor)
	}
	return &s, nil
}
