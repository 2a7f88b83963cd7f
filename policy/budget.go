package policy

// RetryBudget bounds a destination's retries in flight by a share of its
// requests in flight, Envoy's retry_budget (Istio's
// trafficPolicy.retryBudget): at most Percent of the attempts in flight,
// but never fewer than MinRetryConcurrency. Its fields are used as they
// are; the resolver fills in Envoy's defaults, 20 and 3.
type RetryBudget struct {
	Percent             float64 // 0-100
	MinRetryConcurrency uint32
}

// Allowed returns how many retries may be in flight while active
// attempts are.
func (b RetryBudget) Allowed(active int64) int64 {
	n := int64(b.Percent / 100 * float64(active))
	return max(n, int64(b.MinRetryConcurrency))
}
