package xdsserver

import (
	"maps"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
)

// unsupportedState is what a stream's resources need that its client
// cannot do (Hooks.Unsupported): by type, from its last request of the
// type, and every sentence already logged, so that each is logged once
// per stream.
type unsupportedState struct {
	byType map[string][]string
	logged map[string]bool
}

func (u *unsupportedState) list() []string {
	set := map[string]bool{}
	for _, l := range u.byType {
		for _, s := range l {
			set[s] = true
		}
	}
	if len(set) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(set))
}

// checkUnsupportedLocked asks Hooks.Unsupported about the resources of
// type typ that st asks for now (every one for a wildcard request), as
// they are now: a config change is followed by the client's ACK, which
// asks again. New findings are logged at WARN, once per stream.
func (s *Server) checkUnsupportedLocked(st *stream, typ string) {
	if s.hooks.Unsupported == nil || st.node == nil || (s.hooks.Judges != nil && !s.hooks.Judges(st.node)) {
		return
	}
	var found []string
	check := func(r types.Resource) {
		for _, f := range s.hooks.Unsupported(st.node, r) {
			if !slices.Contains(found, f) {
				found = append(found, f)
			}
		}
	}
	names := st.types[typ].Requested
	var shared map[string]wireResource
	if ts := s.current[typ]; ts != nil {
		shared = ts.resources
	}
	if len(names) == 0 {
		for _, w := range shared {
			check(w.msg)
		}
	}
	for _, name := range names {
		if w, ok := shared[name]; ok {
			check(w.msg)
		} else if w, ok := st.inboundRes[name]; ok {
			check(w.msg)
		}
	}
	if st.unsupported.byType == nil {
		st.unsupported.byType, st.unsupported.logged = map[string][]string{}, map[string]bool{}
	}
	st.unsupported.byType[typ] = found
	for _, f := range found {
		if !st.unsupported.logged[f] {
			st.unsupported.logged[f] = true
			s.log.Warn("xDS client cannot do what its config asks", "node", st.node.GetId(), "userAgent", st.node.GetUserAgentName()+" "+st.node.GetUserAgentVersion(), "unsupported", f)
		}
	}
}
