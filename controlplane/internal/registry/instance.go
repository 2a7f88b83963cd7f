package registry

import "github.com/meshlet/meshlet/balancer"

// Locality is where an instance runs, as Envoy's core.Locality.
type Locality = balancer.Locality

// Instance is one live endpoint of a service that a meshlet server
// registered with the control plane.
type Instance struct {
	// ID is unique per registration; a re-registration after a reconnect
	// keeps it.
	ID string `json:"id"`
	// Service and Namespace name the service; its host is
	// <service>.<namespace>.svc.cluster.local.
	Service        string `json:"service"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount,omitempty"`
	// Address and Port are where the instance listens.
	Address string `json:"address"`
	Port    uint32 `json:"port"`
	// ServicePort is the port callers name in their target
	// (reviews:9080). It defaults to Port.
	ServicePort uint32 `json:"servicePort"`
	// Protocol is the Istio port protocol: GRPC or HTTP.
	Protocol string            `json:"protocol"`
	Labels   map[string]string `json:"labels,omitempty"`
	Locality Locality          `json:"locality"`
	// Weight is the endpoint's load-balancing weight; 0 means 1.
	Weight uint32 `json:"weight,omitempty"`
	// Identity is the SPIFFE ID that registered the instance, proven by
	// its certificate. Only that identity may change or remove it, and
	// only that identity gets the server Listener for its address.
	Identity string `json:"identity,omitempty"`
	// ListenAddress is the IP the server is bound to when it differs from
	// Address: a wildcard (0.0.0.0 or ::) for a server that listens on
	// every interface and advertises one of them.
	ListenAddress string `json:"listenAddress,omitempty"`
}
