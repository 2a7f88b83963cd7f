package controlplane

import (
	"fmt"
	"maps"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// configChanges is what a reload changed, each resource as "Kind
// namespace/name (file)".
type configChanges struct {
	added, changed, removed []string
}

// diffConfig compares two configs resource by resource. A resource is
// changed when its spec, its annotations or its file differ. A spec the
// config Loader took from memory is the one of the last load, the same
// pointer, and is not compared field by field.
func diffConfig(prev, next *model.Config) configChanges {
	var c configChanges
	type key struct{ kind, namespace, name string }
	keyOf := func(m model.Meta) key { return key{m.Kind, m.Namespace, m.Name} }
	prevRes := istioResources(prev)
	before := make(map[key]istioResource, len(prevRes))
	for _, r := range prevRes {
		before[keyOf(r.Meta)] = r
	}
	for _, r := range istioResources(next) {
		old, ok := before[keyOf(r.Meta)]
		delete(before, keyOf(r.Meta))
		switch {
		case !ok:
			c.added = append(c.added, fmt.Sprintf("%s (%s)", r.Meta, r.File))
		case old.File != r.File:
			c.changed = append(c.changed, fmt.Sprintf("%s (%s, was in %s)", r.Meta, r.File, old.File))
		case (old.spec != r.spec && !proto.Equal(old.spec, r.spec)) || !maps.Equal(old.Annotations, r.Annotations):
			c.changed = append(c.changed, fmt.Sprintf("%s (%s)", r.Meta, r.File))
		}
	}
	for _, r := range prevRes { // in the config's order
		if _, gone := before[keyOf(r.Meta)]; gone {
			c.removed = append(c.removed, fmt.Sprintf("%s (%s)", r.Meta, r.File))
		}
	}
	return c
}

// stageTimes is where a reload's time went, for its log line: from the
// first change the watcher saw to the new resources being served (the
// debounce's wait included), of which the load (read, parse, validate),
// the translation and the xDS server's update (marshal, compare,
// snapshots). The clients' ACKs come after: the push latency metric.
type stageTimes struct {
	sinceChange, load, translate, serve time.Duration
	parsed                              int // documents the load parsed
}

// logLoaded logs a reload that was put in force, with what it changed and
// how long it took.
func (s *Server) logLoaded(c configChanges, st stageTimes) {
	attrs := []any{"dir", s.opts.configDir}
	for _, l := range []struct {
		key  string
		list []string
	}{{"added", c.added}, {"changed", c.changed}, {"removed", c.removed}} {
		if len(l.list) > 0 {
			attrs = append(attrs, l.key, strings.Join(l.list, ", "))
		}
	}
	msg := "config loaded"
	if len(attrs) == 2 {
		msg = "config loaded; no resource changed"
	}
	attrs = append(attrs, "since_change", st.sinceChange.Round(time.Microsecond), "load", st.load.Round(time.Microsecond),
		"parsed_documents", st.parsed, "translate", st.translate.Round(time.Microsecond), "serve", st.serve.Round(time.Microsecond))
	s.log.Info(msg, attrs...)
}
