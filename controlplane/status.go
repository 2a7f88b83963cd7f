package controlplane

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
	"github.com/meshlet/meshlet/internal/wire"
)

// Client is one connected xDS stream, as /debug/clients serves it: who it
// is and, per resource type, what it was sent and what it acknowledged,
// as istioctl proxy-status shows for Envoy.
type Client struct {
	StreamID int64  `json:"streamID"`
	NodeID   string `json:"nodeID"`
	// Service is the workload's app label, or its WORKLOAD_NAME, from its
	// node metadata; empty when it sent neither.
	Service string `json:"service,omitempty"`
	// Namespace is the proven namespace of its certificate, or the
	// claimed one on the insecure and read-only ports.
	Namespace string `json:"namespace,omitempty"`
	// Identity is the SPIFFE ID of its verified certificate ("" on the
	// read-only plaintext port).
	Identity  string         `json:"identity,omitempty"`
	Mode      string         `json:"mode,omitempty"`
	UserAgent string         `json:"userAgent,omitempty"`
	Cluster   string         `json:"cluster,omitempty"`
	Metadata  map[string]any `json:"metadata,omitempty"`
	Peer      string         `json:"peer,omitempty"`
	Connected time.Time      `json:"connected"`
	// Types are keyed by short type name: Listener, RouteConfiguration,
	// Cluster, ClusterLoadAssignment.
	Types map[string]*ClientType `json:"types"`
	// Unsupported names what the config it asked for needs that this
	// client (by its user agent: a gRPC client of another language, say)
	// cannot do, one sentence each: what it drops or refuses. Empty for
	// meshlet's own clients. docs/xds-compatibility.md has the table.
	Unsupported []string `json:"unsupported,omitempty"`
}

// ClientType is what one client asked for and acknowledged of one type.
type ClientType struct {
	// Status is SYNCED (it ACKed what it was sent last), STALE (sent, not
	// ACKed yet), NACKED (it rejected what it was sent last; it keeps its
	// previous config) or NOT SENT.
	Status     string    `json:"status"`
	Requested  []string  `json:"requested"`
	Sent       string    `json:"sentVersion,omitempty"`
	Acked      string    `json:"ackedVersion,omitempty"`
	Nacked     string    `json:"nackedVersion,omitempty"`
	NackDetail string    `json:"nackDetail,omitempty"`
	NackCount  int       `json:"nackCount,omitempty"`
	LastNack   time.Time `json:"lastNack,omitzero"`
}

// The values of ClientType.Status.
const (
	StatusSynced  = "SYNCED"
	StatusStale   = "STALE"
	StatusNacked  = "NACKED"
	StatusNotSent = "NOT SENT"
)

// Clients returns what /debug/clients serves: every connected xDS stream,
// by stream ID.
func (s *Server) Clients() []Client {
	var out []Client
	for _, cs := range s.xds.Clients() {
		c := Client{
			StreamID: cs.StreamID, NodeID: cs.NodeID, Identity: cs.Identity, Mode: cs.Mode, UserAgent: cs.UserAgent,
			Cluster: cs.Cluster, Metadata: cs.Metadata, Peer: cs.Peer, Connected: cs.Connected, Types: map[string]*ClientType{},
			Unsupported: cs.Unsupported,
		}
		if labels, ok := cs.Metadata[wire.MetaLabels].(map[string]any); ok {
			c.Service, _ = labels["app"].(string)
		}
		if c.Service == "" {
			c.Service, _ = cs.Metadata[wire.MetaWorkloadName].(string)
		}
		c.Namespace, _ = cs.Metadata[wire.MetaNamespace].(string)
		if id, err := spiffeid.FromString(cs.Identity); err == nil {
			if seg := strings.Split(id.Path(), "/"); len(seg) == 5 && seg[1] == "ns" {
				c.Namespace = seg[2]
			}
		}
		for typ, ts := range cs.Types {
			ct := &ClientType{Requested: ts.Requested, Sent: ts.Sent, Acked: ts.Acked, Nacked: ts.Nacked,
				NackDetail: ts.NackDetail, NackCount: ts.NackCount, LastNack: ts.LastNack}
			switch {
			case ts.Sent == "":
				ct.Status = StatusNotSent
			case ts.Nacked == ts.Sent:
				ct.Status = StatusNacked
			case ts.Acked == ts.Sent:
				ct.Status = StatusSynced
			default:
				ct.Status = StatusStale
			}
			if ct.Requested == nil {
				ct.Requested = []string{}
			}
			c.Types[typ] = ct
		}
		out = append(out, c)
	}
	if out == nil {
		out = []Client{}
	}
	return out
}

// Matches reports whether c is the workload that name names: its node ID,
// its service ("reviews"), its service and namespace ("reviews.default"),
// or a part of its node ID.
func (c Client) Matches(name string) bool {
	return name != "" && (c.NodeID == name || c.Service == name || c.Service+"."+c.Namespace == name ||
		strings.Contains(c.NodeID, name))
}

// WorkloadConfig is one workload's config as served: its status and the
// resources of each type that it asked for (all of them for a type it
// asked for by wildcard).
type WorkloadConfig struct {
	Client Client `json:"client"`
	// XDS is keyed by type URL, as ConfigDump.XDS is.
	XDS map[string]XDSDump `json:"xds"`
}

// ErrNotFound is returned by WorkloadConfigs and Describe when nothing
// matches what was asked for.
var ErrNotFound = errors.New("not found")

// WorkloadConfigs returns the config of every connected workload that
// name matches (Client.Matches), for /debug/config_dump?workload=.
func (s *Server) WorkloadConfigs(name string) ([]WorkloadConfig, error) {
	res := s.xds.Resources()
	var out []WorkloadConfig
	for _, c := range s.Clients() {
		if !c.Matches(name) {
			continue
		}
		wc := WorkloadConfig{Client: c, XDS: map[string]XDSDump{}}
		for typ, vr := range res {
			ct := c.Types[typ[strings.LastIndex(typ, ".")+1:]]
			if ct == nil {
				continue
			}
			d := XDSDump{Version: ct.Acked, Resources: []json.RawMessage{}}
			for _, r := range vr.Resources {
				if len(ct.Requested) == 0 || slices.Contains(ct.Requested, cache.GetResourceName(r)) {
					d.Resources = append(d.Resources, marshal(r))
				}
			}
			wc.XDS[typ] = d
		}
		out = append(out, wc)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("controlplane: no connected workload matches %q (a node ID, service, or service.namespace; see /debug/clients): %w", name, ErrNotFound)
	}
	return out, nil
}

// Description is what applies to one service, for /debug/describe: its
// ports, the routes and destination rules of its host, its subsets and
// the instances in each, the clusters and endpoints served for it, and
// the security and rate-limit policies that select its workloads.
type Description struct {
	Service          Service            `json:"service"`
	VirtualServices  []DumpedResource   `json:"virtualServices"`
	DestinationRules []DumpedResource   `json:"destinationRules"`
	Subsets          []Subset           `json:"subsets"`
	Instances        []Instance         `json:"instances"`
	Clusters         []DescribedCluster `json:"clusters"`
	// Policies are the PeerAuthentications, AuthorizationPolicies and
	// RateLimitPolicies of the service's namespace and of the root
	// namespace that select its workloads (its instances' labels, or
	// app=<service> when it has none).
	Policies []DumpedResource `json:"policies"`
}

// Subset is a DestinationRule subset and the registered instances its
// labels select.
type Subset struct {
	Name      string            `json:"name"`
	Rule      string            `json:"rule"` // the DestinationRule, "namespace/name"
	Labels    map[string]string `json:"labels"`
	Instances []string          `json:"instances"` // IDs
}

// DescribedCluster is one xDS cluster of the service and its endpoints as
// served.
type DescribedCluster struct {
	Name      string   `json:"name"`
	Endpoints []string `json:"endpoints"` // "ip:port"
}

// Describe returns what applies to service: "name" (in namespace
// default), "name.namespace", or a host as the mesh knows it.
func (s *Server) Describe(service string) (Description, error) {
	d := s.Dump()
	s.mu.Lock()
	cfg := s.cfg
	s.mu.Unlock()
	name, ns, _ := strings.Cut(service, ".")
	if ns == "" {
		ns = wire.DefaultNamespace
	}
	var svc *Service
	for i, sv := range d.Services {
		if sv.Host == service || sv.Host == service+"."+wire.DomainSuffix || !strings.Contains(ns, ".") && sv.Host == wire.ServiceHost(name, ns) {
			svc = &d.Services[i]
			break
		}
	}
	if svc == nil {
		known := make([]string, 0, len(d.Services))
		for _, sv := range d.Services {
			known = append(known, sv.Host)
		}
		return Description{}, fmt.Errorf("controlplane: no service %q; the mesh knows %s: %w", service, strings.Join(known, ", "), ErrNotFound)
	}
	out := Description{Service: *svc, VirtualServices: []DumpedResource{}, DestinationRules: []DumpedResource{},
		Subsets: []Subset{}, Instances: []Instance{}, Clusters: []DescribedCluster{}, Policies: []DumpedResource{}}
	dumped := func(r istioResource) DumpedResource {
		return DumpedResource{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, File: r.File, Spec: marshal(r.spec)}
	}
	for _, vs := range cfg.VirtualServices {
		if slices.Contains(vs.Spec.GetHosts(), svc.Host) {
			out.VirtualServices = append(out.VirtualServices, dumped(istioResource{vs.Meta, vs.Spec}))
		}
	}
	var labelSets []map[string]string
	for _, inst := range d.Instances {
		if wire.ServiceHost(inst.Service, inst.Namespace) == svc.Host {
			out.Instances = append(out.Instances, inst)
			labelSets = append(labelSets, inst.Labels)
		}
	}
	if len(labelSets) == 0 {
		labelSets = append(labelSets, map[string]string{"app": strings.Split(svc.Host, ".")[0]})
	}
	for _, dr := range cfg.DestinationRules {
		if dr.Spec.GetHost() != svc.Host {
			continue
		}
		out.DestinationRules = append(out.DestinationRules, dumped(istioResource{dr.Meta, dr.Spec}))
		for _, ss := range dr.Spec.GetSubsets() {
			sub := Subset{Name: ss.GetName(), Rule: dr.Namespace + "/" + dr.Name, Labels: ss.GetLabels(), Instances: []string{}}
			for _, inst := range out.Instances {
				if selects(ss.GetLabels(), inst.Labels) {
					sub.Instances = append(sub.Instances, inst.ID)
				}
			}
			out.Subsets = append(out.Subsets, sub)
		}
	}
	applies := func(namespace string, selector map[string]string) bool {
		if namespace != svc.Namespace && namespace != s.opts.rootNamespace {
			return false
		}
		return slices.ContainsFunc(labelSets, func(l map[string]string) bool { return selects(selector, l) })
	}
	for _, pa := range cfg.PeerAuthentications {
		if applies(pa.Namespace, pa.Spec.GetSelector().GetMatchLabels()) {
			out.Policies = append(out.Policies, dumped(istioResource{pa.Meta, pa.Spec}))
		}
	}
	for _, ap := range cfg.AuthorizationPolicies {
		if applies(ap.Namespace, ap.Spec.GetSelector().GetMatchLabels()) {
			out.Policies = append(out.Policies, dumped(istioResource{ap.Meta, ap.Spec}))
		}
	}
	for _, rl := range cfg.RateLimitPolicies {
		if applies(rl.Namespace, rl.Spec.Selector) {
			out.Policies = append(out.Policies, dumped(istioResource{rl.Meta, rl.Spec.Struct()}))
		}
	}
	res := s.xds.Resources()
	endpoints := map[string][]string{}
	for _, r := range res[resource.EndpointType].Resources {
		cla, ok := r.(*endpointv3.ClusterLoadAssignment)
		if !ok {
			continue
		}
		for _, le := range cla.GetEndpoints() {
			for _, e := range le.GetLbEndpoints() {
				a := e.GetEndpoint().GetAddress().GetSocketAddress()
				endpoints[cla.GetClusterName()] = append(endpoints[cla.GetClusterName()], fmt.Sprintf("%s:%d", a.GetAddress(), a.GetPortValue()))
			}
		}
	}
	for _, r := range res[resource.ClusterType].Resources {
		n := cache.GetResourceName(r)
		if _, _, host, ok := wire.ParseClusterName(n); ok && host == svc.Host {
			eps := endpoints[n]
			if eps == nil {
				eps = []string{}
			}
			slices.Sort(eps)
			out.Clusters = append(out.Clusters, DescribedCluster{Name: n, Endpoints: eps})
		}
	}
	return out, nil
}

// selects reports whether every label of selector is in labels; an empty
// selector selects everything.
func selects(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// Validate checks a config directory as Start and every reload do,
// offline: it reads, parses and validates every file and translates the
// result to xDS, without serving anything. It returns nil for a config the
// control plane would serve, and otherwise an error holding a FieldError
// for each problem (FieldErrors), naming its file, resource and field.
// Of opts it uses WithTrustDomain, WithRootNamespace and WithLogger (which
// is told about documents that are not Istio config, skipped).
func Validate(dir string, opts ...Option) error {
	o := defaultOptions()
	for _, opt := range opts {
		opt.apply(&o)
	}
	cfg, err := config.Load(dir, logSkipped(o.log))
	if err != nil {
		return fmt.Errorf("controlplane: config %s is invalid:\n%w", dir, err)
	}
	if _, err := translate.Build(translate.Input{Config: cfg, TrustDomain: o.trustDomain, RootNamespace: o.rootNamespace}); err != nil {
		return fmt.Errorf("controlplane: config %s cannot be served: %w", dir, err)
	}
	return nil
}
