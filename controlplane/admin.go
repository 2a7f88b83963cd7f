package controlplane

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		built, warming := s.built, s.warming
		s.mu.Unlock()
		switch {
		case !built:
			http.Error(w, "no xDS snapshot yet", http.StatusServiceUnavailable)
		case warming:
			http.Error(w, "warming up: waiting for servers to register again", http.StatusServiceUnavailable)
		default:
			w.Write([]byte("ready\n"))
		}
	})
	mux.HandleFunc("GET /debug/config", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Dump())
	})
	mux.HandleFunc("GET /debug/clients", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Clients())
	})
	mux.HandleFunc("GET /debug/describe", func(w http.ResponseWriter, r *http.Request) {
		svc := r.URL.Query().Get("service")
		if svc == "" {
			http.Error(w, "describe: ?service=<name>[.<namespace>] is required", http.StatusBadRequest)
			return
		}
		d, err := s.Describe(svc)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, d)
	})
	mux.HandleFunc("GET /debug/config_dump", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("workload")
		if name == "" {
			http.Error(w, "config_dump: ?workload=<node ID, service or service.namespace> is required", http.StatusBadRequest)
			return
		}
		wc, err := s.WorkloadConfigs(name)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, wc)
	})
	mux.Handle("GET /metrics", s.metrics.handler())
	return mux
}

// writeError answers 404 for ErrNotFound, 500 otherwise, with the error.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	if errors.Is(err, ErrNotFound) {
		code = http.StatusNotFound
	}
	http.Error(w, err.Error(), code)
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// ConfigDump is what /debug/config serves. Its lists are empty, never
// null, when there is nothing in them.
type ConfigDump struct {
	ConfigDir string `json:"configDir"`
	// Status is "ok" when the config in force is the config directory's
	// latest content, and "refused" when a later change was refused
	// (LastError) and the config loaded at LoadedAt stays in force.
	Status string `json:"status"`
	// LoadedAt is when the config in force was loaded.
	LoadedAt time.Time `json:"loadedAt"`
	// LastError is the refused change the directory holds now; null when
	// the latest change was loaded.
	LastError *ConfigError `json:"lastError"`
	// PreviousRefusal is the last refused change that a later, good load
	// replaced, so that a refusal seen in the log can still be found; null
	// if there was none.
	PreviousRefusal *PreviousRefusal `json:"previousRefusal"`
	Warming         bool             `json:"warming"`
	// Resources are the Istio resources of the config in force, of every
	// kind.
	Resources []DumpedResource   `json:"resources"`
	Services  []Service          `json:"services"`
	Instances []Instance         `json:"instances"`
	XDS       map[string]XDSDump `json:"xds"`
	// Warnings are choices the translation made that the operator should
	// know about (a cluster mixing endpoints that expect mTLS with ones
	// that may not speak it).
	Warnings []string `json:"warnings"`
}

// The values of ConfigDump.Status.
const (
	ConfigOK      = "ok"
	ConfigRefused = "refused"
)

// PreviousRefusal is a refused config change that a later, good load
// replaced.
type PreviousRefusal struct {
	ConfigError
	// ReplacedAt is when the good config that replaced it, which is the
	// one in force or an earlier one, was loaded.
	ReplacedAt time.Time `json:"replacedAt"`
}

// Service is one service host the mesh knows, from a ServiceEntry or from
// registered instances.
type Service struct {
	Host      string `json:"host"`
	Namespace string `json:"namespace"`
	Ports     []Port `json:"ports"`
}

// Port is one port of a service.
type Port struct {
	Number     uint32 `json:"number"`
	TargetPort uint32 `json:"targetPort,omitempty"`
	Name       string `json:"name,omitempty"`
	Protocol   string `json:"protocol"`
}

// Instance is one registered server.
type Instance struct {
	ID             string            `json:"id"`
	Service        string            `json:"service"`
	Namespace      string            `json:"namespace"`
	ServiceAccount string            `json:"serviceAccount,omitempty"`
	Address        string            `json:"address"`
	Port           uint32            `json:"port"`
	ServicePort    uint32            `json:"servicePort"`
	Protocol       string            `json:"protocol"`
	Labels         map[string]string `json:"labels,omitempty"`
	Locality       string            `json:"locality,omitempty"` // region/zone/subzone
	// Identity is the SPIFFE ID that registered it, proven by its
	// certificate.
	Identity string `json:"identity,omitempty"`
	// ListenAddress is the IP the server is bound to when it differs from
	// Address (a wildcard).
	ListenAddress string `json:"listenAddress,omitempty"`
	// State is NOT_SERVING, SERVING or DRAINING. Only SERVING instances
	// are in callers' endpoints.
	State string `json:"state"`
	// Lost is set while the instance's connection is gone and its grace
	// period runs.
	Lost bool `json:"lost,omitempty"`
}

// DumpedResource is one Istio resource of the config in force.
type DumpedResource struct {
	Kind      string          `json:"kind"`
	Namespace string          `json:"namespace"`
	Name      string          `json:"name"`
	File      string          `json:"file"`
	Spec      json.RawMessage `json:"spec"`
}

// XDSDump is one xDS type as served.
type XDSDump struct {
	Version   string            `json:"version"`
	Resources []json.RawMessage `json:"resources"`
}

// Dump returns what /debug/config serves: the config in force, the last
// refused change, the registry and the xDS resources.
func (s *Server) Dump() ConfigDump {
	s.mu.Lock()
	cfg, at, lastErr, prevErr, services, warming, warnings := s.cfg, s.cfgAt, s.lastErr, s.prevErr, s.services, s.warming, s.warnings
	s.mu.Unlock()
	d := ConfigDump{
		ConfigDir: s.opts.configDir, Status: ConfigOK, LoadedAt: at, LastError: lastErr, PreviousRefusal: prevErr, Warming: warming,
		Resources: []DumpedResource{}, Services: []Service{}, Instances: []Instance{}, XDS: map[string]XDSDump{},
		Warnings: append([]string{}, warnings...),
	}
	if lastErr != nil {
		d.Status = ConfigRefused
	}
	for _, svc := range services {
		out := Service{Host: svc.Host, Namespace: svc.Namespace, Ports: []Port{}}
		for _, p := range svc.Ports {
			out.Ports = append(out.Ports, Port{Number: p.Number, TargetPort: p.TargetPort, Name: p.Name, Protocol: p.Protocol})
		}
		d.Services = append(d.Services, out)
	}
	for _, e := range s.reg.Entries() {
		loc := strings.TrimRight(e.Locality.Region+"/"+e.Locality.Zone+"/"+e.Locality.SubZone, "/")
		d.Instances = append(d.Instances, Instance{
			ID: e.ID, Service: e.Service, Namespace: e.Namespace, ServiceAccount: e.ServiceAccount,
			Address: e.Address, Port: e.Port, ServicePort: e.ServicePort, Protocol: e.Protocol,
			Labels: e.Labels, Locality: loc, State: e.State.String(), Lost: e.Lost,
			Identity: e.Identity, ListenAddress: e.ListenAddress,
		})
	}
	for _, r := range istioResources(cfg) {
		d.Resources = append(d.Resources, DumpedResource{Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, File: r.File, Spec: marshal(r.spec)})
	}
	for typ, vr := range s.xds.Resources() {
		x := XDSDump{Version: vr.Version, Resources: []json.RawMessage{}}
		for _, r := range vr.Resources {
			x.Resources = append(x.Resources, marshal(r))
		}
		d.XDS[typ] = x
	}
	return d
}

// istioResource is one Istio resource of a config, of any kind.
type istioResource struct {
	model.Meta
	spec proto.Message
}

// istioResources lists every resource of cfg, of every kind, in the config's
// order.
func istioResources(cfg *model.Config) []istioResource {
	var out []istioResource
	for _, r := range cfg.ServiceEntries {
		out = append(out, istioResource{r.Meta, r.Spec})
	}
	for _, r := range cfg.WorkloadEntries {
		out = append(out, istioResource{r.Meta, r.Spec})
	}
	for _, r := range cfg.WorkloadGroups {
		out = append(out, istioResource{r.Meta, r.Spec})
	}
	for _, r := range cfg.VirtualServices {
		out = append(out, istioResource{r.Meta, r.Spec})
	}
	for _, r := range cfg.DestinationRules {
		out = append(out, istioResource{r.Meta, r.Spec})
	}
	for _, r := range cfg.PeerAuthentications {
		out = append(out, istioResource{r.Meta, r.Spec})
	}
	for _, r := range cfg.AuthorizationPolicies {
		out = append(out, istioResource{r.Meta, r.Spec})
	}
	for _, r := range cfg.RateLimitPolicies {
		out = append(out, istioResource{r.Meta, r.Spec.Struct()})
	}
	return out
}

func marshal(m proto.Message) json.RawMessage {
	b, err := protojson.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}
