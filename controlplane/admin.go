package controlplane

import (
	"encoding/json"
	"net/http"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
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
		writeJSON(w, s.xds.Clients())
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
	}
}

// ConfigDump is what /debug/config serves.
type ConfigDump struct {
	ConfigDir string              `json:"configDir"`
	LoadedAt  time.Time           `json:"loadedAt"`
	LastError *ConfigError        `json:"lastError"`
	Warming   bool                `json:"warming"`
	Resources []DumpedResource    `json:"resources"`
	Services  []translate.Service `json:"services"`
	Instances []registry.Entry    `json:"instances"`
	XDS       map[string]XDSDump  `json:"xds"`
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
	cfg, at, lastErr, services, warming := s.cfg, s.cfgAt, s.lastErr, s.services, s.warming
	s.mu.Unlock()
	d := ConfigDump{
		ConfigDir: s.opts.configDir, LoadedAt: at, LastError: lastErr, Warming: warming,
		Services: services, Instances: s.reg.Entries(), XDS: map[string]XDSDump{},
	}
	add := func(m model.Meta, spec proto.Message) {
		d.Resources = append(d.Resources, DumpedResource{Kind: m.Kind, Namespace: m.Namespace, Name: m.Name, File: m.File, Spec: marshal(spec)})
	}
	for _, r := range cfg.ServiceEntries {
		add(r.Meta, r.Spec)
	}
	for _, r := range cfg.WorkloadEntries {
		add(r.Meta, r.Spec)
	}
	for _, r := range cfg.VirtualServices {
		add(r.Meta, r.Spec)
	}
	for _, r := range cfg.DestinationRules {
		add(r.Meta, r.Spec)
	}
	for typ, vr := range s.xds.Resources() {
		x := XDSDump{Version: vr.Version}
		for _, r := range vr.Resources {
			x.Resources = append(x.Resources, marshal(r))
		}
		d.XDS[typ] = x
	}
	return d
}

func marshal(m proto.Message) json.RawMessage {
	b, err := protojson.Marshal(m)
	if err != nil {
		b, _ = json.Marshal(map[string]string{"error": err.Error()})
	}
	return b
}
