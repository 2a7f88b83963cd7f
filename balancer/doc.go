// Package balancer chooses an endpoint of a cluster for each request: the
// load-balancing algorithms, endpoint health, priority and locality
// failover, and outlier ejection that a sidecar would apply, with no
// transport in sight. meshlet's HTTP client feeds it the endpoints of a
// cluster from EDS and the policy of its DestinationRule, calls Pick for
// each request and Done when the request ends.
//
// The policies (Config.Policy) are RoundRobin, WeightedRoundRobin,
// LeastRequest (power of two choices), Random, RingHash (consistent
// hashing of Request.Hash) and PeakEWMA (latency-aware, as in Linkerd and
// Finagle). An Envoy Cluster's LEAST_REQUEST maps to LeastRequest, RANDOM
// to Random, RING_HASH to RingHash with its ring sizes, and ROUND_ROBIN to
// WeightedRoundRobin (Envoy's semantics) or RoundRobin (gRPC-Go's, which
// ignores weights); they agree while endpoint weights are equal. Istio has
// no field for PeakEWMA; the control plane selects it by a documented
// meshlet extension, and PeakEWMAConfig documents its settings (decay 10s
// and default RTT 30ms, as Linkerd).
//
// Every policy picks within one priority level: the highest EDS priority
// (lowest number) that has an available endpoint, that is one that is
// healthy and not ejected. A level is used whole until it has none left,
// then the next one takes all requests, as gRPC-Go's priority balancer does
// (Envoy instead spills part of the load early, by its overprovisioning
// factor 1.4; there is no panic mode either). With Config.Locality, each
// EDS priority is split further by distance from the caller's locality, as
// Istio's locality failover orders it. Locality weights from EDS
// (Endpoint.LocalityWeight) share a level between its localities.
//
// With Config.Outlier, consecutive 5xx, gateway or local-origin failures
// reported to Done eject an endpoint for a time that grows with each
// ejection, never ejecting more than a maximum share of the endpoints; see
// OutlierConfig.
//
// The shortest use:
//
//	b, err := balancer.New(balancer.Config{Policy: balancer.LeastRequest})
//	if err != nil {
//		return err
//	}
//	err = b.Update([]balancer.Endpoint{{Address: "10.0.0.1:8080"}, {Address: "10.0.0.2:8080"}})
//	...
//	r, err := b.Pick(balancer.Request{})
//	if err != nil {
//		return err // wraps balancer.ErrNoEndpoints
//	}
//	resp, err := send(r.Endpoint.Address)
//	r.Done(balancer.DoneInfo{Err: err, Failure: classify(resp), Latency: time.Since(start)})
//
// A Balancer starts no goroutine: time comes from Config.Now, or from
// Request.Now and DoneInfo.At, and ejections end on the next Pick or Done
// after their time.
package balancer
