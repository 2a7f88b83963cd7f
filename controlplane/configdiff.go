package controlplane

import (
	"fmt"
	"maps"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// configChanges is what a reload changed, each resource as "Kind
// namespace/name (file)".
type configChanges struct {
	added, changed, removed []string
}

// diffConfig compares two configs resource by resource. A resource is
// changed when its spec, its annotations or its file differ.
func diffConfig(prev, next *model.Config) configChanges {
	var c configChanges
	before := map[string]istioResource{}
	for _, r := range istioResources(prev) {
		before[r.Meta.String()] = r
	}
	for _, r := range istioResources(next) {
		old, ok := before[r.Meta.String()]
		delete(before, r.Meta.String())
		switch {
		case !ok:
			c.added = append(c.added, fmt.Sprintf("%s (%s)", r.Meta, r.File))
		case old.File != r.File:
			c.changed = append(c.changed, fmt.Sprintf("%s (%s, was in %s)", r.Meta, r.File, old.File))
		case !proto.Equal(old.spec, r.spec) || !maps.Equal(old.Annotations, r.Annotations):
			c.changed = append(c.changed, fmt.Sprintf("%s (%s)", r.Meta, r.File))
		}
	}
	for _, r := range istioResources(prev) { // in the config's order
		if _, gone := before[r.Meta.String()]; gone {
			c.removed = append(c.removed, fmt.Sprintf("%s (%s)", r.Meta, r.File))
		}
	}
	return c
}

// logLoaded logs a reload that was put in force, with what it changed.
func (s *Server) logLoaded(c configChanges) {
	attrs := []any{"dir", s.opts.configDir}
	for _, l := range []struct {
		key  string
		list []string
	}{{"added", c.added}, {"changed", c.changed}, {"removed", c.removed}} {
		if len(l.list) > 0 {
			attrs = append(attrs, l.key, strings.Join(l.list, ", "))
		}
	}
	if len(attrs) == 2 {
		s.log.Info("config loaded; no resource changed", attrs...)
		return
	}
	s.log.Info("config loaded", attrs...)
}
