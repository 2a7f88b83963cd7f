package mesh

import (
	"encoding/json"
	"os"

	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/internal/xdspath"
	"github.com/meshlet/meshlet/security"
)

// bootstrapFromEnv reports whether the user configured gRPC-Go's xDS
// bootstrap through its environment variables. gRPC-Go reads them once at
// start; meshlet then leaves gRPC's xDS configuration to them.
func bootstrapFromEnv() bool {
	return os.Getenv("GRPC_XDS_BOOTSTRAP") != "" || os.Getenv("GRPC_XDS_BOOTSTRAP_CONFIG") != ""
}

// bootstrapJSON builds the gRPC-Go xDS bootstrap for this workload. Node
// metadata uses istiod's keys so that the control plane (and istiod) can
// tell who is asking.
func (m *Mesh) bootstrapJSON() ([]byte, error) {
	o := m.opts
	node := map[string]any{
		"id":       m.nodeID,
		"cluster":  o.service + "." + o.namespace,
		"metadata": wire.NodeMetadata(o.namespace, o.serviceAccount, o.service, o.labels),
	}
	if l := o.locality; l != (Locality{}) {
		node["locality"] = map[string]string{"region": l.Region, "zone": l.Zone, "sub_zone": l.SubZone}
	}
	creds := []any{map[string]any{"type": xdspath.ChannelCredsName, "config": map[string]string{"key": m.cpCredsKey}}}
	if o.cpInsecure {
		creds = []any{map[string]string{"type": "insecure"}}
	}
	b := map[string]any{
		"xds_servers": []any{map[string]any{
			"server_uri": o.controlPlane,
			// mTLS with the workload's SVID, verified against the roots it
			// holds out of band.
			"channel_creds":   creds,
			"server_features": []string{"xds_v3"},
		}},
		"node":                                   node,
		"server_listener_resource_name_template": wire.ServerListenerTemplate,
		// The control plane's TLS contexts name this instance for both the
		// workload's certificate and the roots that verify peers.
		"certificate_providers": map[string]any{
			wire.CertProviderInstance: security.ProviderConfig(m.providerKey),
		},
	}
	return json.Marshal(b)
}
