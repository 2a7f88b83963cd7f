package resolver

import (
	"encoding/json"
	"fmt"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// Status of a resource in a Dump, with the names of Envoy's client status
// discovery service (CSDS).
const (
	StatusRequested    = xdsclient.StatusRequested    // asked for, not answered yet
	StatusDoesNotExist = xdsclient.StatusDoesNotExist // the control plane does not have it
	StatusACKed        = xdsclient.StatusACKed        // the value in force was accepted
	StatusNACKed       = xdsclient.StatusNACKed       // its last update was rejected
)

// Resource is one resource the client is subscribed to, as it holds it.
type Resource struct {
	// Type is the type's short name ("Cluster"), TypeURL its type URL.
	Type    string `json:"type"`
	TypeURL string `json:"typeURL"`
	Name    string `json:"name"`
	// Status is one of the Status constants.
	Status string `json:"status"`
	// Version is the version of the last response that carried the value
	// in force, and UpdatedAt when that value came; empty without one.
	Version   string    `json:"version,omitempty"`
	UpdatedAt time.Time `json:"updatedAt,omitzero"`
	// Error is why the last update was rejected and ErrorVersion the
	// version it came in, while Status is NACKED. The value in force, if
	// any, is still the last good one.
	Error        string `json:"error,omitempty"`
	ErrorVersion string `json:"errorVersion,omitempty"`
	// Watchers is the number of watches of the name in this process.
	Watchers int `json:"watchers"`
	// Config is the value in force as the control plane sent it: the
	// Envoy resource in protojson (with its "@type"), nil without one.
	Config json.RawMessage `json:"config,omitempty"`
}

// Dump returns every resource the client is subscribed to, by type (in
// the order requests are sent) and name, with its status and the config
// in force. It is for debug pages: it renders every resource as JSON.
func (c *Client) Dump() []Resource {
	in := c.x.Dump()
	out := make([]Resource, len(in))
	for i, d := range in {
		out[i] = Resource{
			Type: d.Short, TypeURL: d.URL, Name: d.Name, Status: d.Status,
			Version: d.Version, UpdatedAt: d.At, Error: d.Err, ErrorVersion: d.ErrVersion,
			Watchers: d.Watchers,
		}
		if d.Raw != nil {
			out[i].Config = configJSON(d.URL, d.Raw)
		}
	}
	return out
}

// configJSON renders a resource as protojson. A resource that cannot be
// rendered (a nested Any of a type this binary does not link) is shown
// as an object that says why, never dropped.
func configJSON(url string, raw []byte) json.RawMessage {
	b, err := protojson.Marshal(&anypb.Any{TypeUrl: url, Value: raw})
	if err != nil {
		b, _ = json.Marshal(map[string]string{"@type": url, "error": fmt.Sprintf("cannot render as JSON: %v", err)})
	}
	return b
}
