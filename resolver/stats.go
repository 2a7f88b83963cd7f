package resolver

import (
	"time"

	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

// TypeStats are the client's counts and versions of one resource type.
// The counts are cumulative since the client started, for metrics.
type TypeStats struct {
	// Type is the resource type's short name: "Listener",
	// "RouteConfiguration", "Cluster" or "ClusterLoadAssignment"; TypeURL
	// its type URL.
	Type    string `json:"type"`
	TypeURL string `json:"typeURL"`
	// Version is the last version accepted (ACKed), and VersionAt when;
	// set by Stats only.
	Version   string    `json:"version,omitempty"`
	VersionAt time.Time `json:"versionAt,omitzero"`
	// Responses counts the responses received, ACKs and NACKs those
	// accepted and rejected: Responses = ACKs + NACKs.
	Responses uint64 `json:"responses"`
	ACKs      uint64 `json:"acks"`
	NACKs     uint64 `json:"nacks"`
	// Updates counts resources whose value changed, Rejected invalid
	// resources (a NACKed response holds one or more), Removed resources
	// found absent (a Listener or Cluster response left them out, or none
	// answered for them in time).
	Updates  uint64 `json:"updates"`
	Rejected uint64 `json:"rejected"`
	Removed  uint64 `json:"removed"`
	// Unchanged counts watched resources that came again with the bytes
	// of the value in force, and so were not decoded again (a response
	// holds every resource of its type, changed or not).
	Unchanged uint64 `json:"unchanged"`
	// LastNACK is the last rejected response, nil if none; it stays after
	// later ACKs. Set by Stats only.
	LastNACK *NACK `json:"lastNACK,omitempty"`
	// Subscribed is the number of names watched now; set by Stats only.
	Subscribed int `json:"subscribed"`
}

// NACK is a response the client rejected.
type NACK struct {
	Version string    `json:"version"`
	Nonce   string    `json:"nonce"`
	Error   string    `json:"error"`
	At      time.Time `json:"at"`
}

// Counts returns the cumulative counts of each resource type, in the
// order requests are sent. It reads atomics only and does not block:
// cheap enough for a metrics callback.
func (c *Client) Counts() []TypeStats { return convertStats(c.x.Counts()) }

// Stats is Counts with each type's version in force, last NACK and
// subscriptions. It takes the client's lock briefly.
func (c *Client) Stats() []TypeStats { return convertStats(c.x.Stats()) }

// Connects returns how many times the client connected to a control plane
// (a stream got its first response: the first connection and every
// reconnection) and how many times it lost such a connection. It reads
// atomics only.
func (c *Client) Connects() (connects, disconnects uint64) { return c.x.Connects() }

func convertStats(in []xdsclient.TypeStats) []TypeStats {
	out := make([]TypeStats, len(in))
	for i, s := range in {
		out[i] = TypeStats{
			Type: s.Short, TypeURL: s.URL, Version: s.Version, VersionAt: s.VersionAt,
			Responses: s.Responses, ACKs: s.ACKs, NACKs: s.NACKs,
			Updates: s.Updates, Rejected: s.Rejected, Removed: s.Removed, Unchanged: s.Unchanged,
			Subscribed: s.Subscribed,
		}
		if n := s.LastNACK; n != nil {
			out[i].LastNACK = &NACK{Version: n.Version, Nonce: n.Nonce, Error: n.Err, At: n.At}
		}
	}
	return out
}
