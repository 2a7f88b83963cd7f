package dataplane

import (
	"cmp"
	"slices"
	"strconv"
	"time"

	"github.com/meshlet/meshlet/policy"
)

// InboundSnapshot is the rate limits of one address a server listens on.
type InboundSnapshot struct {
	// Listener is the server Listener's name; Address the listening
	// address the set knows it by.
	Listener string `json:"listener"`
	Address  string `json:"address"`
	// RateLimits are its local_ratelimit filters, in order.
	RateLimits []RateLimitSnapshot `json:"rateLimits"`
}

// RateLimitSnapshot is one local_ratelimit filter: its policy's name,
// a bucket per descriptor, and its default bucket.
type RateLimitSnapshot struct {
	Filter      string            `json:"filter"`
	Descriptors []LimiterSnapshot `json:"descriptors,omitempty"`
	Default     *LimiterSnapshot  `json:"default,omitempty"`
}

// LimiterSnapshot is one token bucket, or one bucket per key.
type LimiterSnapshot struct {
	// Rate is tokens a second, Burst the bucket's size.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// Tokens is what the shared bucket holds now (that of requests
	// without a key, when keyed).
	Tokens float64 `json:"tokens"`
	// MaxKeys bounds the keyed buckets (0: not keyed); Keys is how many
	// there are, Keyed the most recently used of them, and Overflow the
	// tokens of the bucket keys without a slot share.
	MaxKeys  int           `json:"maxKeys,omitempty"`
	Keys     int           `json:"keys,omitempty"`
	Keyed    []KeyedBucket `json:"keyed,omitempty"`
	Overflow *float64      `json:"overflow,omitempty"`
	// Allowed and Limited count requests, cumulative while the bucket's
	// settings stay.
	Allowed uint64 `json:"allowed"`
	Limited uint64 `json:"limited"`
}

// KeyedBucket is the bucket of one key.
type KeyedBucket struct {
	Key    string  `json:"key"`
	Tokens float64 `json:"tokens"`
}

// maxSnapshotKeys bounds the keyed buckets a snapshot lists per limiter:
// a page, not a dump of every caller.
const maxSnapshotKeys = 20

// Snapshot returns the rate limits of every listening address in the
// set, at now, by address. It takes no token.
func (s *InboundSet) Snapshot(now time.Time) []InboundSnapshot {
	idx := s.m.Load()
	if idx == nil {
		return nil
	}
	var out []InboundSnapshot
	for ap, in := range idx.bound {
		out = append(out, in.Snapshot(now, ap.String()))
	}
	for port, in := range idx.wildcard {
		out = append(out, in.Snapshot(now, ":"+strconv.Itoa(int(port))))
	}
	for addr, in := range idx.other {
		out = append(out, in.Snapshot(now, addr))
	}
	slices.SortFunc(out, func(a, b InboundSnapshot) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

// Snapshot returns the Inbound's rate limits at now; address is what to
// call it.
func (in *Inbound) Snapshot(now time.Time, address string) InboundSnapshot {
	snap := InboundSnapshot{Listener: in.name, Address: address, RateLimits: []RateLimitSnapshot{}}
	lim := in.limits.Load()
	if lim == nil {
		return snap
	}
	for _, f := range lim.filters {
		rs := RateLimitSnapshot{Filter: f.rl.Name}
		for _, d := range f.descriptors {
			rs.Descriptors = append(rs.Descriptors, limiterSnapshot(d.State(now, maxSnapshotKeys)))
		}
		if f.def != nil {
			d := limiterSnapshot(f.def.State(now, 0))
			rs.Default = &d
		}
		snap.RateLimits = append(snap.RateLimits, rs)
	}
	return snap
}

func limiterSnapshot(st policy.LimiterState) LimiterSnapshot {
	ls := LimiterSnapshot{
		Rate: st.Settings.Rate, Burst: st.Settings.Burst, Tokens: st.Shared.Tokens,
		MaxKeys: st.Settings.MaxBuckets, Keys: st.Keys, Allowed: st.Allowed, Limited: st.Limited,
	}
	for _, k := range st.Keyed {
		ls.Keyed = append(ls.Keyed, KeyedBucket{Key: k.Key, Tokens: k.Tokens})
	}
	if st.Overflow != nil {
		t := st.Overflow.Tokens
		ls.Overflow = &t
	}
	return ls
}
