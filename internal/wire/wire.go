// Package wire holds the names that the control plane and the library must
// agree on, on the wire. They are istiod's, so that a meshlet service can
// also follow istiod.
package wire

import (
	"fmt"
	"strings"
)

// ServerListenerTemplate is the server_listener_resource_name_template of a
// gRPC server's bootstrap: the Listener a server bound to IP:port asks for
// is this with %s replaced by "IP:port".
const ServerListenerTemplate = "xds.istio.io/grpc/lds/inbound/%s"

// DomainSuffix is the suffix of a fully qualified service host.
const DomainSuffix = "svc.cluster.local"

// ServiceHost returns the fully qualified host of a service:
// <name>.<namespace>.svc.cluster.local.
func ServiceHost(name, namespace string) string {
	return name + "." + namespace + "." + DomainSuffix
}

// QualifyHost expands a short host (no dot) in namespace ns to its fully
// qualified form; a name with a dot is returned as it is.
func QualifyHost(host, ns string) string {
	if host == "" || strings.Contains(host, ".") || strings.HasPrefix(host, "*") {
		return host
	}
	return ServiceHost(host, ns)
}

// RandomPolicy is the name of the gRPC balancer meshlet registers for
// Istio's RANDOM load balancer; Clusters name it in load_balancing_policy.
const RandomPolicy = "meshlet.random"

// PeakEWMAPolicy names meshlet's peak-EWMA load balancer in a Cluster's
// load_balancing_policy, through a TypedStruct whose type_url ends in it.
// meshlet's resolver reads it; gRPC-Go has no balancer of this name, so a
// gRPC client skips it and uses the next policy in the list.
const PeakEWMAPolicy = "meshlet.peak_ewma"

// ClusterName returns the name of the cluster of one subset of a service
// port: outbound|<port>|<subset>|<host>.
func ClusterName(port uint32, subset, host string) string {
	return fmt.Sprintf("outbound|%d|%s|%s", port, subset, host)
}

// ParseClusterName splits a name made by ClusterName into its port,
// subset and host; ok is false for any other name.
func ParseClusterName(name string) (port, subset, host string, ok bool) {
	parts := strings.Split(name, "|")
	if len(parts) != 4 || parts[0] != "outbound" || parts[1] == "" || parts[3] == "" {
		return "", "", "", false
	}
	return parts[1], parts[2], parts[3], true
}

// CertProviderInstance is the name of the certificate-provider instance in
// every meshlet workload's bootstrap (certificate_providers). The control
// plane's TLS contexts name it both for the workload's own certificate and
// for the trust-domain roots that verify peers.
const CertProviderInstance = "meshlet"

// ControlPlaneServiceAccount is the service account in the control
// plane's SPIFFE ID, spiffe://<trust domain>/ns/<root namespace>/sa/
// meshlet-controlplane, which workloads check when they connect to it.
const ControlPlaneServiceAccount = "meshlet-controlplane"

// DefaultRootNamespace is the namespace of mesh-wide policy and of the
// control plane's own identity, Istio's.
const DefaultRootNamespace = "istio-system"

// DefaultTrustDomain is the SPIFFE trust domain of the mesh, Istio's.
const DefaultTrustDomain = "cluster.local"

// ControlPlaneID returns the control plane's SPIFFE ID in trust domain td
// and root namespace ns.
func ControlPlaneID(td, ns string) string {
	return "spiffe://" + td + "/ns/" + ns + "/sa/" + ControlPlaneServiceAccount
}

// The node metadata keys meshlet's clients send and the control plane
// reads: istiod's, so that a meshlet service can also follow istiod.
const (
	MetaNamespace      = "NAMESPACE"
	MetaServiceAccount = "SERVICE_ACCOUNT"
	MetaWorkloadName   = "WORKLOAD_NAME"
	MetaLabels         = "LABELS"
	MetaGenerator      = "GENERATOR"
	// GeneratorGRPC is the GENERATOR value that asks for proxyless gRPC
	// resources.
	GeneratorGRPC = "grpc"
)

// DefaultNamespace is the namespace of a workload or resource that names
// none, Kubernetes'.
const DefaultNamespace = "default"

// NodeMetadata returns the node metadata of a workload, with istiod's keys
// (structpb-ready values). Empty fields are left out.
func NodeMetadata(namespace, serviceAccount, workload string, labels map[string]string) map[string]any {
	md := map[string]any{MetaGenerator: GeneratorGRPC}
	if namespace != "" {
		md[MetaNamespace] = namespace
	}
	if serviceAccount != "" {
		md[MetaServiceAccount] = serviceAccount
	}
	if workload != "" {
		md[MetaWorkloadName] = workload
	}
	if len(labels) > 0 {
		l := make(map[string]any, len(labels))
		for k, v := range labels {
			l[k] = v
		}
		md[MetaLabels] = l
	}
	return md
}

// NodeID returns a node ID in istiod's sidecar shape, which meshlet's
// clients use: "meshlet~<workload>-<suffix>.<namespace>~<namespace>.svc.cluster.local".
func NodeID(workload, suffix, namespace string) string {
	return fmt.Sprintf("meshlet~%s-%s.%s~%s.%s", workload, suffix, namespace, namespace, DomainSuffix)
}

// ServerListenerName is the name of the server Listener for a server at
// addr ("ip:port").
func ServerListenerName(addr string) string { return fmt.Sprintf(ServerListenerTemplate, addr) }

// MetadataKey is the key of meshlet's settings in a Cluster's
// metadata.filter_metadata, which gRPC-Go ignores.
const MetadataKey = "meshlet"

// Fields of the breaker under MetadataKey: a struct with
// BreakerConsecutiveErrors (a number) and BreakerOpenFor (a Go duration
// string), from a DestinationRule's circuit-breaker annotation.
const (
	BreakerField             = "circuit_breaker"
	BreakerConsecutiveErrors = "consecutive_errors"
	BreakerOpenFor           = "open_for"
)
