package translate

import (
	"net"
	"sort"
	"strconv"
	"strings"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/internal/wire"
)

// service is one service host with its endpoints per service port.
type service struct {
	Service
	// implicit is set for a host made from registry instances alone, with
	// no ServiceEntry.
	implicit bool
	// endpoints are per service port number, without duplicate addresses.
	endpoints map[uint32][]endpointInfo
	seen      map[uint32]map[string]bool
	// sans are the subjectAltNames of the ServiceEntries for the host: the
	// identities its endpoints must prove, instead of their own.
	sans []string
}

// endpointInfo is one endpoint of one service port.
type endpointInfo struct {
	address  string
	port     uint32
	labels   map[string]string
	locality registry.Locality
	weight   uint32 // 0 means 1
	// registered is set for a registry instance: a meshlet server, which
	// accepts mTLS unless its PeerAuthentication says DISABLE.
	registered bool
	// namespace and serviceAccount are the endpoint's identity.
	namespace      string
	serviceAccount string
}

func newService(host, ns string, implicit bool) *service {
	return &service{
		Service:   Service{Host: host, Namespace: ns},
		implicit:  implicit,
		endpoints: make(map[uint32][]endpointInfo),
		seen:      make(map[uint32]map[string]bool),
	}
}

func (s *service) port(number uint32) (Port, bool) {
	for _, p := range s.Ports {
		if p.Number == number {
			return p, true
		}
	}
	return Port{}, false
}

// addPort adds p unless the service already has a port of that number: the
// first definition wins.
func (s *service) addPort(p Port) {
	if _, ok := s.port(p.Number); !ok {
		s.Ports = append(s.Ports, p)
	}
}

// addEndpoint adds e to a service port unless that port already has an
// endpoint at the same address and port: gRPC NACKs a ClusterLoadAssignment
// that holds one address twice.
func (s *service) addEndpoint(port uint32, e endpointInfo) {
	key := net.JoinHostPort(e.address, strconv.FormatUint(uint64(e.port), 10))
	seen := s.seen[port]
	if seen == nil {
		seen = make(map[string]bool)
		s.seen[port] = seen
	}
	if seen[key] {
		return
	}
	seen[key] = true
	s.endpoints[port] = append(s.endpoints[port], e)
}

// buildServices makes the service view: every ServiceEntry host, then an
// implicit service for every registry host that no ServiceEntry names.
// Wildcard hosts are left out: no client can dial them.
func buildServices(cfg *model.Config, instances []registry.Instance) []*service {
	insts := sortedInstances(instances)
	byHost := make(map[string]*service)

	type source struct {
		se   *model.ServiceEntry
		host string
	}
	var sources []source
	for _, se := range cfg.ServiceEntries {
		if se.Spec == nil {
			continue
		}
		for _, h := range se.Spec.GetHosts() {
			if h == "" || strings.HasPrefix(h, "*") {
				continue
			}
			s := byHost[h]
			if s == nil {
				s = newService(h, se.Namespace, false)
				byHost[h] = s
			}
			for _, p := range se.Spec.GetPorts() {
				s.addPort(Port{Number: p.GetNumber(), TargetPort: p.GetTargetPort(), Name: p.GetName(), Protocol: p.GetProtocol()})
			}
			s.sans = append(s.sans, se.Spec.GetSubjectAltNames()...)
			sources = append(sources, source{se: se, host: h})
		}
	}
	idx := newSelectIndex(cfg.WorkloadEntries, insts)
	for _, src := range sources {
		addServiceEntryEndpoints(byHost[src.host], src.se, idx)
	}

	targets := make(map[string]map[uint32]map[uint32]bool) // host -> service port -> instance ports
	for _, inst := range insts {
		h := instanceHost(inst)
		s := byHost[h]
		if s == nil {
			s = newService(h, instanceNamespace(inst), true)
			byHost[h] = s
			targets[h] = make(map[uint32]map[uint32]bool)
		}
		if !s.implicit {
			continue // a ServiceEntry host: its endpoints are added above
		}
		sp := servicePort(inst)
		s.addPort(Port{Number: sp, Protocol: inst.Protocol})
		if targets[h][sp] == nil {
			targets[h][sp] = make(map[uint32]bool)
		}
		targets[h][sp][inst.Port] = true
		s.addEndpoint(sp, endpointFromInstance(inst))
	}
	for h, byPort := range targets {
		s := byHost[h]
		for i, p := range s.Ports {
			if tp := byPort[p.Number]; len(tp) == 1 {
				for port := range tp {
					if port != p.Number {
						s.Ports[i].TargetPort = port
					}
				}
			}
		}
	}

	out := make([]*service, 0, len(byHost))
	for _, h := range sortedKeys(byHost) {
		s := byHost[h]
		sort.Slice(s.Ports, func(i, j int) bool { return s.Ports[i].Number < s.Ports[j].Number })
		out = append(out, s)
	}
	return out
}

// addServiceEntryEndpoints adds the endpoints one ServiceEntry gives host s:
// its inline endpoints, the WorkloadEntries and registry instances of its
// namespace that its workloadSelector selects, and the registry instances
// registered under the host itself.
func addServiceEntryEndpoints(s *service, se *model.ServiceEntry, idx *selectIndex) {
	spec := se.Spec
	sel := spec.GetWorkloadSelector()
	ports := spec.GetPorts()
	var wles []*model.WorkloadEntry
	if sel != nil {
		wles = idx.workloadEntries(se.Namespace, sel.GetLabels())
	}
	insts := idx.instances(se.Namespace, sel.GetLabels(), sel != nil, s.Host)
	for _, p := range ports {
		target := p.GetTargetPort()
		if target == 0 {
			target = p.GetNumber()
		}
		added := 0
		for _, we := range spec.GetEndpoints() {
			if we.GetAddress() == "" {
				continue
			}
			s.addEndpoint(p.GetNumber(), endpointFromWorkloadEntry(we, se.Namespace, p, target))
			added++
		}
		if sel != nil {
			for _, wle := range wles {
				if wle.Spec == nil || wle.Spec.GetAddress() == "" || wle.Namespace != se.Namespace || !labelsMatch(sel.GetLabels(), wle.Spec.GetLabels()) {
					continue
				}
				s.addEndpoint(p.GetNumber(), endpointFromWorkloadEntry(wle.Spec, wle.Namespace, p, target))
				added++
			}
		}
		for _, inst := range insts {
			selected := sel != nil && instanceNamespace(inst) == se.Namespace && labelsMatch(sel.GetLabels(), inst.Labels)
			// An operator who listed a host's endpoints inline closed it:
			// a registration under the host does not join them.
			joins := instanceHost(inst) == s.Host && len(spec.GetEndpoints()) == 0
			if !selected && !joins {
				continue
			}
			if !instanceServes(inst, p, target, len(ports)) {
				continue
			}
			s.addEndpoint(p.GetNumber(), endpointFromInstance(inst))
			added++
		}
		// A DNS ServiceEntry with no endpoints resolves its own host, as in
		// Istio.
		res := spec.GetResolution()
		if added == 0 && sel == nil && (res == networking.ServiceEntry_DNS || res == networking.ServiceEntry_DNS_ROUND_ROBIN) {
			s.addEndpoint(p.GetNumber(), endpointInfo{address: s.Host, port: target, namespace: se.Namespace})
		}
	}
}

// instanceServes reports whether a registry instance is an endpoint of the
// ServiceEntry port p: it registered that service port, or it listens on the
// port's target port, or the ServiceEntry has only that one port.
func instanceServes(inst registry.Instance, p *networking.ServicePort, target uint32, nports int) bool {
	return servicePort(inst) == p.GetNumber() || inst.Port == target || nports == 1
}

// endpointFromWorkloadEntry makes the endpoint of a WorkloadEntry, or of an
// inline ServiceEntry endpoint, of namespace ns.
func endpointFromWorkloadEntry(we *networking.WorkloadEntry, ns string, p *networking.ServicePort, target uint32) endpointInfo {
	port := target
	if name := p.GetName(); name != "" {
		if wp, ok := we.GetPorts()[name]; ok && wp != 0 {
			port = wp
		}
	}
	return endpointInfo{
		address:  we.GetAddress(),
		port:     port,
		labels:   we.GetLabels(),
		locality: parseLocality(we.GetLocality()),
		weight:   we.GetWeight(),

		namespace:      ns,
		serviceAccount: we.GetServiceAccount(),
	}
}

func endpointFromInstance(inst registry.Instance) endpointInfo {
	return endpointInfo{
		address:  inst.Address,
		port:     inst.Port,
		labels:   inst.Labels,
		locality: inst.Locality,
		weight:   inst.Weight,

		registered:     true,
		namespace:      instanceNamespace(inst),
		serviceAccount: inst.ServiceAccount,
	}
}

// parseLocality reads Istio's "region/zone/subzone" form.
func parseLocality(s string) registry.Locality {
	var l registry.Locality
	parts := strings.SplitN(s, "/", 3)
	l.Region = parts[0]
	if len(parts) > 1 {
		l.Zone = parts[1]
	}
	if len(parts) > 2 {
		l.SubZone = parts[2]
	}
	return l
}

func instanceNamespace(inst registry.Instance) string {
	if inst.Namespace == "" {
		return wire.DefaultNamespace
	}
	return inst.Namespace
}

// instanceHost is the host an instance registered under:
// <service>.<namespace>.svc.cluster.local.
func instanceHost(inst registry.Instance) string {
	return inst.Service + "." + instanceNamespace(inst) + "." + wire.DomainSuffix
}

// servicePort is the port callers name for an instance; it defaults to the
// instance's own port.
func servicePort(inst registry.Instance) uint32 {
	if inst.ServicePort != 0 {
		return inst.ServicePort
	}
	return inst.Port
}

func sortedInstances(in []registry.Instance) []registry.Instance {
	out := append([]registry.Instance(nil), in...)
	sort.SliceStable(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Namespace != b.Namespace {
			return a.Namespace < b.Namespace
		}
		if a.Service != b.Service {
			return a.Service < b.Service
		}
		if a.ID != b.ID {
			return a.ID < b.ID
		}
		if a.Address != b.Address {
			return a.Address < b.Address
		}
		return a.Port < b.Port
	})
	return out
}
