package balancer

// The detectors that eject an endpoint, as EndpointStatus.EjectReason
// names them (Envoy's outlier detection types).
const (
	Eject5xx         = "consecutive_5xx"
	EjectGateway     = "consecutive_gateway_failure"
	EjectLocalOrigin = "consecutive_local_origin_failure"
)

// Ejections returns how many times outlier detection has ejected an
// endpoint of this balancer, cumulative. It reads one atomic: cheap
// enough for a metrics callback.
func (b *Balancer) Ejections() uint64 { return b.ejections.Load() }

// Policy returns the balancer's policy.
func (b *Balancer) Policy() PolicyKind { return b.s.policy }
