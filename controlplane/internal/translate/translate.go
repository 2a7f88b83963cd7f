package translate

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/internal/wire"
)

// Defaults for the Input fields of the same names, Istio's.
const (
	DefaultTrustDomain   = wire.DefaultTrustDomain
	DefaultRootNamespace = wire.DefaultRootNamespace
)

// Input is everything a translation needs.
type Input struct {
	// Config is the validated configuration. Hosts are fully qualified.
	Config *model.Config
	// Instances are the live, ready instances in the registry.
	Instances []registry.Instance
	// ServerAddresses are the "ip:port" listening addresses of the gRPC xDS
	// servers that need an inbound Listener.
	ServerAddresses []string
	// OmitEndpoints leaves out every ClusterLoadAssignment: the warm-up after
	// a control-plane restart, before the registry has heard from the
	// servers again.
	OmitEndpoints bool
	// TrustDomain is the SPIFFE trust domain of every identity:
	// spiffe://<TrustDomain>/ns/<namespace>/sa/<service account>. Empty
	// means DefaultTrustDomain.
	TrustDomain string
	// RootNamespace holds the mesh-wide PeerAuthentication and
	// AuthorizationPolicies. Empty means DefaultRootNamespace.
	RootNamespace string
	// Workloads says who listens at each ServerAddresses entry, as the
	// server's xDS node metadata tells it. An address with no entry is a
	// workload of namespace "default" with no labels. A registry instance
	// at an address listed here is taken to be that workload.
	Workloads map[string]Workload
	// Inbound are server Listeners built for one client each, keyed by
	// Key in Output.Inbound: the same address can be two workloads' (two
	// hosts' wildcard binds), and each sees only its own.
	Inbound []Inbound
}

// Inbound asks for the server Listener of one workload at one address.
type Inbound struct {
	Key      string
	Address  string // "ip:port"
	Workload Workload
}

// Workload is the workload behind a server address: what PeerAuthentication
// and AuthorizationPolicy selectors match.
type Workload struct {
	Namespace      string
	ServiceAccount string
	Labels         map[string]string
}

// Output holds the xDS resources per type, each list sorted by name, and the
// service view they were built from.
type Output struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Services is the service view, sorted by host, for the admin endpoint.
	Services []Service
	// Inbound holds the server Listeners of Input.Inbound by key.
	Inbound map[string][]*listenerv3.Listener
	// Warnings are what the operator should know about the translation:
	// choices made for them that may not be what they meant.
	Warnings []string
}

// Service is one service host and its ports.
type Service struct {
	Host      string
	Namespace string
	Ports     []Port // sorted by number
}

// Port is one port of a service.
type Port struct {
	// Number is the port callers name in their target (host:Number).
	Number uint32
	// TargetPort is the port endpoints listen on, when it differs from
	// Number and is the same for every endpoint; 0 otherwise.
	TargetPort uint32
	// Name is the ServiceEntry port name; empty for an implicit service.
	Name string
	// Protocol is the Istio protocol: GRPC, HTTP, HTTP2, ...
	Protocol string
}

// listenerName is the name of the client Listener and of its
// RouteConfiguration: the authority a gRPC client dials, "host:port".
func listenerName(host string, port uint32) string {
	return fmt.Sprintf("%s:%d", host, port)
}

// Build translates in into xDS resources. It returns an error only when the
// configuration holds something the translator cannot express, which the
// validator should have refused: an internal inconsistency.
func Build(in Input) (*Output, error) { return build(in, nil) }

// build is Build, taking each ClusterLoadAssignment from memory when it
// holds one built from the same inputs.
func build(in Input, memory *claMemory) (*Output, error) {
	cfg := in.Config
	if cfg == nil {
		cfg = &model.Config{}
	}
	svcs := buildServices(cfg, in.Instances)
	t := &translator{
		cfg:           cfg,
		byHost:        make(map[string]*service, len(svcs)),
		hashes:        make(map[string][]*routev3.RouteAction_HashPolicy),
		trustDomain:   cmp.Or(in.TrustDomain, DefaultTrustDomain),
		rootNamespace: cmp.Or(in.RootNamespace, DefaultRootNamespace),
		workloads:     in.Workloads,
	}
	for _, s := range svcs {
		t.byHost[s.Host] = s
	}

	out := &Output{}
	// Clusters first: routes need the hash policies of the clusters they
	// point at.
	for _, s := range svcs {
		dr := t.destinationRule(s)
		for _, p := range s.Ports {
			cs, err := t.buildClusters(s, p, dr)
			if err != nil {
				return nil, err
			}
			out.Clusters = append(out.Clusters, cs...)
			if in.OmitEndpoints {
				continue
			}
			out.Endpoints = append(out.Endpoints, memory.loadAssignment(wire.ClusterName(p.Number, "", s.Host), s.endpoints[p.Number], nil))
			for _, sub := range dr.subsets {
				out.Endpoints = append(out.Endpoints, memory.loadAssignment(wire.ClusterName(p.Number, sub.GetName(), s.Host), s.endpoints[p.Number], sub.GetLabels()))
			}
		}
	}
	for _, s := range svcs {
		vs := t.virtualService(s.Host)
		for _, p := range s.Ports {
			l, err := clientListener(listenerName(s.Host, p.Number))
			if err != nil {
				return nil, err
			}
			out.Listeners = append(out.Listeners, l)
			rc, err := t.buildRouteConfig(s, p.Number, vs)
			if err != nil {
				return nil, err
			}
			out.Routes = append(out.Routes, rc)
		}
		out.Services = append(out.Services, s.Service)
	}
	for _, addr := range dedupSorted(in.ServerAddresses) {
		l, err := t.serverListener(addr, t.workload(addr))
		if err != nil {
			return nil, err
		}
		out.Listeners = append(out.Listeners, l)
	}
	for _, ib := range in.Inbound {
		w := ib.Workload
		if w.Namespace == "" {
			w.Namespace = wire.DefaultNamespace
		}
		l, err := t.serverListener(ib.Address, w)
		if err != nil {
			return nil, err
		}
		if out.Inbound == nil {
			out.Inbound = map[string][]*listenerv3.Listener{}
		}
		out.Inbound[ib.Key] = append(out.Inbound[ib.Key], l)
	}

	out.Warnings = t.warnings
	sort.Slice(out.Listeners, func(i, j int) bool { return out.Listeners[i].GetName() < out.Listeners[j].GetName() })
	sort.Slice(out.Routes, func(i, j int) bool { return out.Routes[i].GetName() < out.Routes[j].GetName() })
	sort.Slice(out.Clusters, func(i, j int) bool { return out.Clusters[i].GetName() < out.Clusters[j].GetName() })
	sort.Slice(out.Endpoints, func(i, j int) bool {
		return out.Endpoints[i].GetClusterName() < out.Endpoints[j].GetClusterName()
	})
	return out, nil
}

// translator carries the indexes one Build uses.
type translator struct {
	cfg    *model.Config
	byHost map[string]*service
	// hashes holds the route hash policies that a RING_HASH cluster needs,
	// by cluster name.
	hashes map[string][]*routev3.RouteAction_HashPolicy

	trustDomain   string
	rootNamespace string
	workloads     map[string]Workload
	warnings      []string
}

func (t *translator) warn(w string) {
	if !slices.Contains(t.warnings, w) {
		t.warnings = append(t.warnings, w)
	}
}

// virtualService returns the VirtualService that routes host for mesh
// traffic: the first (by namespace and name) that names host exactly, else
// the one with the longest wildcard host that covers it, else nil.
func (t *translator) virtualService(host string) *model.VirtualService {
	var best *model.VirtualService
	bestLen := -1
	for _, vs := range t.cfg.VirtualServices {
		if vs.Spec == nil || !appliesToMesh(vs.Spec.GetGateways()) {
			continue
		}
		for _, h := range vs.Spec.GetHosts() {
			if h == host {
				return vs
			}
			if n := wildcardMatch(h, host); n > bestLen {
				best, bestLen = vs, n
			}
		}
	}
	return best
}

// appliesToMesh reports whether a gateways list selects sidecar (here:
// in-process) traffic: an empty list or one that names "mesh".
func appliesToMesh(gateways []string) bool {
	if len(gateways) == 0 {
		return true
	}
	for _, g := range gateways {
		if g == "mesh" {
			return true
		}
	}
	return false
}

// wildcardMatch returns the length of the wildcard pattern when pattern
// ("*" or "*.example.com") covers host, and -1 otherwise.
func wildcardMatch(pattern, host string) int {
	switch {
	case pattern == "*":
		return 0
	case strings.HasPrefix(pattern, "*.") && strings.HasSuffix(host, pattern[1:]):
		return len(pattern)
	}
	return -1
}

// toAny marshals m deterministically, so that equal input gives equal bytes.
func toAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, fmt.Errorf("translate: marshal %T: %w", m, err)
	}
	return a, nil
}

// adsConfigSource is the ConfigSource that says "over the same ADS stream".
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// dedupSorted returns the distinct strings of in, sorted.
func dedupSorted(in []string) []string {
	seen := make(map[string]bool, len(in))
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// labelsMatch reports whether every selector label is in labels. An empty
// selector matches everything, as Istio's label subsets do.
func labelsMatch(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// sortedKeys returns the keys of m in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// where names a resource for an error message: "file: Kind namespace/name".
func where(m model.Meta) string {
	if m.File == "" {
		return m.String()
	}
	return m.File + ": " + m.String()
}
