package xdsserver

import (
	"bytes"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// A stream is sent a new EDS version only when an assignment it asks for
// changed. go-control-plane answers every open EDS watch whose snapshot
// version moved; a registration in one service would then send every
// EDS stream a response, empty for those that watch other services
// (unchanged.go leaves out what they hold), which each must decode and
// ACK. So a stream none of whose assignments changed keeps its EDS
// version label on the new contents: it is sent nothing, and a name it
// asks for later is answered from the current build.

// changedNames returns the names whose bytes differ between old and new,
// or that only one of them has.
func changedNames(old *typeState, now map[string]wireResource) map[string]bool {
	out := map[string]bool{}
	var before map[string]wireResource
	if old != nil {
		before = old.resources
	}
	for name, w := range now {
		if b, ok := before[name]; !ok || !bytes.Equal(b.raw, w.raw) {
			out[name] = true
		}
	}
	for name := range before {
		if _, ok := now[name]; !ok {
			out[name] = true
		}
	}
	return out
}

// holdEDSLocked returns snap, or a copy of it whose EDS version is the one
// the stream has, when no assignment the stream asks for changed since
// that version: not in the Update in progress, and (a stream whose label
// is behind the build's was held before) not in those since.
func (s *Server) holdEDSLocked(st *stream, snap *cache.Snapshot) *cache.Snapshot {
	if st.snap == nil {
		return snap
	}
	held := st.snap.GetVersion(resource.EndpointType)
	if held == "" || held == snap.GetVersion(resource.EndpointType) {
		return snap
	}
	ts := st.types[resource.EndpointType]
	if ts == nil || len(ts.Requested) == 0 {
		return snap // nothing asked yet, or a wildcard: all of them
	}
	for _, name := range ts.Requested {
		if s.edsChanged[name] {
			return snap
		}
	}
	out := &cache.Snapshot{Resources: snap.Resources}
	et := cache.GetResponseType(resource.EndpointType)
	items := out.Resources[et].Items
	out.Resources[et] = cache.Resources{Version: held, Items: items}
	return out
}
