// Package model holds the validated mesh configuration that the control plane
// translates to xDS: Istio resources after strict decoding, validation and
// host normalisation.
package model

import (
	"fmt"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// Meta identifies one resource and where it came from.
type Meta struct {
	Kind      string // VirtualService, DestinationRule, ...
	Name      string
	Namespace string
	File      string // path of the file the resource was read from
	// Annotations are the resource's metadata.annotations, nil if it has
	// none. meshlet reads LoadBalancerAnnotation and
	// CircuitBreakerAnnotation; it keeps the others.
	Annotations map[string]string
}

// String gives the form used in error messages: "Kind namespace/name".
func (m Meta) String() string { return fmt.Sprintf("%s %s/%s", m.Kind, m.Namespace, m.Name) }

// ServiceEntry is an Istio ServiceEntry. Hosts are fully qualified.
type ServiceEntry struct {
	Meta
	Spec *networking.ServiceEntry
}

// WorkloadEntry is an Istio WorkloadEntry: one static endpoint.
type WorkloadEntry struct {
	Meta
	Spec *networking.WorkloadEntry
}

// WorkloadGroup is an Istio WorkloadGroup: it lets the workloads of its
// template's service account register as instances of one service, with
// the template's labels.
type WorkloadGroup struct {
	Meta
	Spec *networking.WorkloadGroup
}

// Service returns the service the group's workloads serve: the template's
// app label, as Istio's Service selectors use it, else the group's name.
func (g *WorkloadGroup) Service() string {
	if app := g.Spec.GetTemplate().GetLabels()["app"]; app != "" {
		return app
	}
	return g.Name
}

// VirtualService is an Istio VirtualService. Spec.Hosts and every
// destination host are fully qualified.
type VirtualService struct {
	Meta
	Spec *networking.VirtualService
}

// DestinationRule is an Istio DestinationRule. Spec.Host is fully qualified.
type DestinationRule struct {
	Meta
	Spec *networking.DestinationRule
}

// LoadBalancerAnnotation is meshlet's extension of a DestinationRule's load
// balancer, for a policy Istio has no field for. Its one value,
// LoadBalancerPeakEWMA, balances every cluster of the rule, top level and
// subsets, by peak EWMA in meshlet's own clients; gRPC clients, which have
// no such balancer, keep the rule's loadBalancer.simple, or round robin.
// It cannot be combined with consistentHash.
const LoadBalancerAnnotation = "meshlet.io/load-balancer"

// LoadBalancerPeakEWMA is the value of LoadBalancerAnnotation that selects
// peak EWMA.
const LoadBalancerPeakEWMA = "PEAK_EWMA"

// PeakEWMA reports whether the rule selects peak EWMA through
// LoadBalancerAnnotation.
func (dr *DestinationRule) PeakEWMA() bool {
	return dr.Annotations[LoadBalancerAnnotation] == LoadBalancerPeakEWMA
}

// PeerAuthentication is an Istio PeerAuthentication: the mTLS mode of the
// workloads it selects. One without a selector applies to its whole
// namespace, or to the whole mesh in the root namespace.
type PeerAuthentication struct {
	Meta
	Spec *security.PeerAuthentication
}

// AuthorizationPolicy is an Istio AuthorizationPolicy: who may call the
// workloads it selects. One without a selector applies to its whole
// namespace, or to the whole mesh in the root namespace.
type AuthorizationPolicy struct {
	Meta
	Spec *security.AuthorizationPolicy
}

// Config is one whole, validated configuration. Resources are sorted by
// namespace and name so that translation is deterministic.
type Config struct {
	ServiceEntries        []*ServiceEntry
	WorkloadEntries       []*WorkloadEntry
	WorkloadGroups        []*WorkloadGroup
	VirtualServices       []*VirtualService
	DestinationRules      []*DestinationRule
	PeerAuthentications   []*PeerAuthentication
	AuthorizationPolicies []*AuthorizationPolicy
}

// HeaderConditionKey returns the header name of an AuthorizationPolicy
// condition key of the form request.headers[<name>], the only condition
// meshlet evaluates, and whether key has that form.
func HeaderConditionKey(key string) (string, bool) {
	name, ok := strings.CutPrefix(key, "request.headers[")
	if !ok {
		return "", false
	}
	name, ok = strings.CutSuffix(name, "]")
	if !ok || name == "" || strings.ContainsAny(name, "[]") {
		return "", false
	}
	return name, true
}
