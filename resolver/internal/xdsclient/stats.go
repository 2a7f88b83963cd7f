package xdsclient

import (
	"maps"
	"slices"
	"sync/atomic"
	"time"
)

// typeCounters are the cumulative counts of one type, written under the
// client's lock and read without it.
type typeCounters struct {
	responses atomic.Uint64 // responses received
	acks      atomic.Uint64 // responses accepted
	nacks     atomic.Uint64 // responses rejected
	updates   atomic.Uint64 // resources whose value changed
	rejected  atomic.Uint64 // resources found invalid
	removed   atomic.Uint64 // resources found absent (left out of a full-state response, or timed out)
	unchanged atomic.Uint64 // resources not decoded: their bytes were those in force
}

// NACK is a rejected response.
type NACK struct {
	Version string    // the version rejected
	Nonce   string    // the nonce of the response rejected
	Err     string    // the reason sent to the control plane
	At      time.Time // when it was rejected
}

// TypeStats are the counts and versions of one resource type. The counts
// are cumulative since the client started.
type TypeStats struct {
	URL, Short string
	// Version is the last version accepted, and VersionAt when.
	Version   string
	VersionAt time.Time
	// Responses = ACKs + NACKs.
	Responses, ACKs, NACKs uint64
	// Updates counts resources whose value changed, Rejected invalid
	// resources, Removed resources found absent (left out of a full-state
	// response, or never answered).
	Updates, Rejected, Removed uint64
	// Unchanged counts watched resources that came with the bytes of the
	// value in force and so were not decoded again.
	Unchanged uint64
	// LastNACK is the last rejection, nil if none.
	LastNACK *NACK
	// Subscribed is the number of names watched now.
	Subscribed int
}

// Counts are the client's cumulative counts of each type, read without
// taking the client's lock: cheap enough for a metrics callback.
func (c *Client) Counts() []TypeStats {
	out := make([]TypeStats, 0, len(c.cfg.Types))
	for _, rt := range c.cfg.Types {
		tc := &c.state[rt.URL].counters
		out = append(out, TypeStats{
			URL: rt.URL, Short: rt.Short,
			Responses: tc.responses.Load(), ACKs: tc.acks.Load(), NACKs: tc.nacks.Load(),
			Updates: tc.updates.Load(), Rejected: tc.rejected.Load(), Removed: tc.removed.Load(),
			Unchanged: tc.unchanged.Load(),
		})
	}
	return out
}

// Stats are Counts with each type's version, last NACK and subscriptions,
// which take the client's lock briefly.
func (c *Client) Stats() []TypeStats {
	out := c.Counts()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range out {
		ts := c.state[out[i].URL]
		out[i].Version, out[i].VersionAt, out[i].Subscribed = ts.version, ts.versionAt, len(ts.resources)
		if n := ts.lastNACK; n != nil {
			cp := *n
			out[i].LastNACK = &cp
		}
	}
	return out
}

// Connects returns how many times a stream got its first response (the
// client connected, or reconnected), and Disconnects how many times such
// a stream was lost. Neither takes the lock.
func (c *Client) Connects() (connects, disconnects uint64) {
	return c.connects.Load(), c.disconnects.Load()
}

// Status of a subscribed resource, with the names Envoy's client status
// discovery service (CSDS) uses.
const (
	StatusRequested    = "REQUESTED"      // asked for, not answered yet
	StatusDoesNotExist = "DOES_NOT_EXIST" // the server said so, or the timer decided
	StatusACKed        = "ACKED"          // the value in force was accepted
	StatusNACKed       = "NACKED"         // the last update was rejected
)

// ResourceDump is one subscribed resource as the client holds it.
type ResourceDump struct {
	URL, Short, Name string
	Status           string
	// Version is the version of the last response that carried the value
	// in force, and At when that value came; both empty without one.
	Version string
	At      time.Time
	// Raw is the serialized value in force (nil without one): the
	// resource as received, of type URL.
	Raw []byte
	// Err is the reason the last update was rejected, and ErrVersion the
	// version it came in, while Status is NACKED.
	Err, ErrVersion string
	// Watchers is the number of watches of the name.
	Watchers int
}

// Dump returns every subscribed resource, by type in request order, then
// by name. It takes the client's lock; Raw is shared and must not be
// modified.
func (c *Client) Dump() []ResourceDump {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []ResourceDump
	for _, rt := range c.cfg.Types {
		ts := c.state[rt.URL]
		for _, name := range slices.Sorted(maps.Keys(ts.resources)) {
			rs := ts.resources[name]
			d := ResourceDump{URL: rt.URL, Short: rt.Short, Name: name, Watchers: len(rs.watchers)}
			if rs.has {
				d.Version, d.At, d.Raw = rs.version, rs.at, rs.raw
			}
			switch {
			case rs.lastErr != "":
				d.Status, d.Err, d.ErrVersion = StatusNACKed, rs.lastErr, rs.nackedAt
			case rs.has:
				d.Status = StatusACKed
			case rs.notFound:
				d.Status = StatusDoesNotExist
			default:
				d.Status = StatusRequested
			}
			out = append(out, d)
		}
	}
	return out
}
