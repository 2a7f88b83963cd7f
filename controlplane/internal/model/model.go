// Package model holds the validated mesh configuration that the control plane
// translates to xDS: Istio resources after strict decoding, validation and
// host normalisation.
package model

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/internal/wire"
)

// DefaultNamespace is the namespace of a resource whose metadata names none,
// as in Kubernetes.
const DefaultNamespace = "default"

// DomainSuffix is appended to <name>.<namespace> to form a service host.
const DomainSuffix = wire.DomainSuffix

// Meta identifies one resource and where it came from.
type Meta struct {
	Kind      string // VirtualService, DestinationRule, ...
	Name      string
	Namespace string
	File      string // path of the file the resource was read from
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

// Config is one whole, validated configuration. Resources are sorted by
// namespace and name so that translation is deterministic.
type Config struct {
	ServiceEntries   []*ServiceEntry
	WorkloadEntries  []*WorkloadEntry
	VirtualServices  []*VirtualService
	DestinationRules []*DestinationRule
}

// FQDN expands a host as written in a resource of namespace ns into a fully
// qualified service host, as Istio does: a short name with no dot,
// "reviews", becomes "reviews.<ns>.svc.cluster.local". A name with a dot, or
// a wildcard, is already qualified and is returned as it is.
func FQDN(host, ns string) string { return wire.QualifyHost(host, ns) }
