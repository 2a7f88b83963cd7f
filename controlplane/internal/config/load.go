package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/internal/wire"
)

// Load reads every *.yaml and *.yml file under dir, recursively and in
// sorted order, skipping hidden files and directories. It parses every
// document, validates the whole set and returns the normalised model.
//
// It reads only regular files and symbolic links to them, each of at most
// DefaultMaxFileSize bytes (see WithMaxFileSize); a named pipe, socket or
// device named *.yaml, or a bigger file, is an error that names it. Load
// never blocks on such a file.
//
// On any problem it returns a nil Config and an error that joins every
// *FieldError found. File names in errors are relative to dir.
func Load(dir string, opts ...Option) (*model.Config, error) {
	return load(dir, newOptions(opts), nil)
}

// load is Load, reusing the parse of each file whose content is in cache
// (by name), and updating cache; nil means no cache.
func load(dir string, o options, cache *fileCache) (*model.Config, error) {
	files := map[string][]byte{}
	var errs []error
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		rel, relErr := filepath.Rel(dir, path)
		if relErr != nil {
			rel = path
		}
		rel = filepath.ToSlash(rel)
		if err != nil {
			if path == dir {
				return err
			}
			errs = append(errs, &FieldError{File: rel, Reason: fmt.Sprintf("cannot read: %v", err)})
			return nil
		}
		if path == dir && !d.IsDir() {
			return errors.New("not a directory")
		}
		if path != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isYAML(d.Name()) {
			return nil
		}
		b, err := readFile(path, o.maxFileSize)
		switch {
		case errors.Is(err, errDirLink):
		case err != nil:
			errs = append(errs, &FieldError{File: rel, Reason: err.Error()})
		default:
			files[rel] = b
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("config: load %s: %w", dir, err)
	}
	cfg, parseErrs := parseFiles(files, o, cache)
	if errs = append(errs, parseErrs...); len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

func isYAML(name string) bool {
	ext := strings.ToLower(filepath.Ext(name))
	return ext == ".yaml" || ext == ".yml"
}

// Parse is Load for files held in memory: it maps a file name, used in
// errors, to the file's content.
func Parse(files map[string][]byte, opts ...Option) (*model.Config, error) {
	cfg, errs := parseFiles(files, newOptions(opts), nil)
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return cfg, nil
}

// parseFiles returns the config, or every error found, sorted by file.
// Each file is parsed on its own, or its parse taken from cache, and the
// files are then merged in name order and validated as a set.
func parseFiles(files map[string][]byte, o options, cache *fileCache) (*model.Config, []error) {
	parsed := cache.parseAll(sortedKeys(files), files, o)
	n := 0
	for _, f := range parsed {
		n += len(f.docs)
	}
	p := &parser{seen: make(map[string]*resource, n), resources: make([]*resource, 0, n), opts: o, selection: cache.selection()}
	for _, f := range parsed {
		p.merge(f)
	}
	p.validateSet()
	if o.skipped != nil {
		for _, s := range p.skipped {
			o.skipped(s)
		}
	}
	if len(p.errs) == 0 {
		return p.config(), nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].File < p.errs[j].File })
	errs := make([]error, len(p.errs))
	for i, e := range p.errs {
		errs[i] = e
	}
	return nil, errs
}

// resource is one decoded document.
type resource struct {
	meta model.Meta
	doc  int            // 1-based index of the document in its file
	raw  map[string]any // spec as written
	spec proto.Message  // nil if the spec could not be decoded

	// What validateWorkloadEntries found for a WorkloadEntry, when the
	// selection of a Loader was at generation selectedGen (0: never).
	selectedGen  uint64
	selectedErrs []*FieldError
}

func (r *resource) where() string {
	if r.doc > 0 {
		return fmt.Sprintf("%s, document %d", r.meta.File, r.doc)
	}
	return r.meta.File
}

// parser collects the resources of a set of files and every error in them.
type parser struct {
	resources []*resource
	seen      map[string]*resource // by kind/namespace/name
	errs      []*FieldError
	skipped   []Skipped // documents outside Istio's API groups
	opts      options

	rateLimits []*model.RateLimitPolicy // meshlet's own kind (ratelimit.go)

	selection *selection // a Loader's memory for validateWorkloadEntries, or nil

	// marks cut the output of a document's own parse into sections
	// (cache.go): one at its start, and one where it claims its name.
	// merge replays them.
	marks []mark
}

func (p *parser) add(file, res, path, format string, args ...any) {
	p.errs = append(p.errs, &FieldError{File: file, Resource: res, Path: path, Reason: fmt.Sprintf(format, args...)})
}

// reporter adds errors for one resource.
func (p *parser) reporter(r *resource) reportFunc {
	return func(path, reason string) {
		p.errs = append(p.errs, &FieldError{File: r.meta.File, Resource: r.meta.String(), Path: path, Reason: reason})
	}
}

// splitDocuments splits a YAML stream at its "---" lines. A document
// starts after the marker's three dashes (what follows them on the line,
// a comment or content, is its own) and ends where the next marker's line
// starts. The documents are slices of content, not copies: a churn of ten
// files of 100 documents split them at every reload.
func splitDocuments(content []byte) [][]byte {
	var docs [][]byte
	start := 0 // of the current document
	for pos := 0; pos < len(content); {
		end := len(content)
		if i := bytes.IndexByte(content[pos:], '\n'); i >= 0 {
			end = pos + i + 1
		}
		line := content[pos:end]
		if len(line) >= 3 && line[0] == '-' && isMarker(line) {
			docs = append(docs, content[start:pos:pos])
			start = pos + 3
		}
		pos = end
	}
	return append(docs, content[start:len(content):len(content)])
}

// isMarker says whether line is a "---" line.
func isMarker(line []byte) bool {
	trimmed := bytes.TrimRight(line, " \t\r\n")
	return bytes.Equal(trimmed, []byte("---")) || bytes.HasPrefix(line, []byte("--- ")) || bytes.HasPrefix(line, []byte("---\t"))
}

var (
	topLevelKeys = map[string]bool{"apiVersion": true, "kind": true, "metadata": true, "spec": true, "status": true}

	// metadataIgnored are the fields a Kubernetes API server adds, as
	// found in the output of kubectl get -o yaml.
	metadataIgnored = map[string]bool{
		"uid": true, "resourceVersion": true, "generation": true,
		"creationTimestamp": true, "managedFields": true,
	}
)

// document parses one document. index is its 1-based place in a file of
// several documents, or 0 if it is the only one.
func (p *parser) document(file string, index int, content []byte) {
	docName := ""
	if index > 0 {
		docName = fmt.Sprintf("document %d", index)
	}
	v, err := decodeYAML(content)
	if err != nil {
		p.add(file, docName, "", "invalid YAML: %v", err)
		return
	}
	if v == nil {
		return // an empty document
	}
	obj, ok := v.(map[string]any)
	if !ok {
		p.add(file, docName, "", "expected a resource with apiVersion, kind, metadata and spec, got %s", describe(v))
		return
	}

	// Name the resource as well as we can before checking the rest.
	kind, _ := obj["kind"].(string)
	apiVersion, _ := obj["apiVersion"].(string)
	meta := model.Meta{Kind: kind, File: file, Namespace: wire.DefaultNamespace}
	if md, ok := obj["metadata"].(map[string]any); ok {
		meta.Name, _ = md["name"].(string)
		if ns, ok := md["namespace"].(string); ok && ns != "" {
			meta.Namespace = ns
		}
	}
	resName := docName
	switch {
	case kind != "" && meta.Name != "":
		resName = meta.String()
	case kind != "" && docName != "":
		resName = kind + " (" + docName + ")"
	case kind != "":
		resName = kind
	}

	if kind == "" {
		p.add(file, resName, "kind", "required (one of %s)", kindList)
		return
	}
	if p.meshletDocument(file, index, resName, apiVersion, kind, meta, obj) {
		return
	}
	info, ok := p.kind(file, resName, apiVersion, kind, meta.Name, obj)
	if !ok {
		return
	}

	bad := false
	for _, k := range sortedKeys(obj) {
		if !topLevelKeys[k] {
			p.add(file, resName, k, "unknown field (a resource has apiVersion, kind, metadata and spec)")
			bad = true
		}
	}
	if !p.metadata(file, resName, obj["metadata"]) {
		return
	}
	meta.Annotations = annotations(obj["metadata"])

	r := &resource{meta: meta, doc: index}
	p.claim(kind+"/"+meta.Namespace+"/"+meta.Name, r, resName)

	spec := map[string]any{}
	switch s := obj["spec"].(type) {
	case nil:
	case map[string]any:
		spec = s
	default:
		p.add(file, resName, "spec", "expected an object, got %s", describe(s))
		bad = true
	}
	r.raw = spec
	if bad {
		p.resources = append(p.resources, r)
		return
	}

	report := p.reporter(r)
	if kind == "VirtualService" {
		upgradeAbortPercent(spec, report)
	}
	msg := info.newSpec()
	issues, ok := decodeSpec(spec, msg, info.support)
	for _, is := range issues {
		report(is.path, is.reason)
	}
	if !ok {
		p.resources = append(p.resources, r)
		return
	}
	r.spec = msg
	info.support.check(msg.ProtoReflect(), "spec", "", report)
	normalise(r)
	p.validateResource(r)
	p.resources = append(p.resources, r)
}

// metadata checks the metadata of a resource and says whether it is good
// enough to go on with.
func (p *parser) metadata(file, resName string, v any) bool {
	md, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			p.add(file, resName, "metadata.name", "required")
		} else {
			p.add(file, resName, "metadata", "expected an object, got %s", describe(v))
		}
		return false
	}
	good := true
	for _, k := range sortedKeys(md) {
		path := "metadata." + k
		switch {
		case k == "name":
			if s, ok := md[k].(string); !ok || s == "" {
				p.add(file, resName, path, "required: a non-empty string, got %s", describe(md[k]))
				good = false
			}
		case k == "namespace":
			if _, ok := md[k].(string); !ok {
				p.add(file, resName, path, "expected a string, got %s", describe(md[k]))
				good = false
			}
		case k == "labels" || k == "annotations":
			m, ok := md[k].(map[string]any)
			if !ok && md[k] != nil {
				p.add(file, resName, path, "expected a map of strings, got %s", describe(md[k]))
				good = false
			}
			for _, mk := range sortedKeys(m) {
				if _, ok := m[mk].(string); !ok {
					p.add(file, resName, fmt.Sprintf("%s[%q]", path, mk), "expected a string, got %s (quote it)", describe(m[mk]))
					good = false
				}
			}
		case metadataIgnored[k]:
		default:
			p.add(file, resName, path, "unknown metadata field (meshlet reads name, namespace, labels and annotations)")
			good = false
		}
	}
	if _, ok := md["name"]; !ok {
		p.add(file, resName, "metadata.name", "required")
		good = false
	}
	return good
}

// annotations returns the metadata.annotations of a resource whose
// metadata has been checked, or nil if it has none.
func annotations(md any) map[string]string {
	obj, _ := md.(map[string]any)
	m, _ := obj["annotations"].(map[string]any)
	if len(m) == 0 {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k], _ = v.(string)
	}
	return out
}

// normalise expands the hosts of a decoded resource in its own namespace,
// upper-cases ServiceEntry port protocols and merges a WorkloadGroup's
// metadata.labels into its template.labels.
func normalise(r *resource) {
	ns := r.meta.Namespace
	switch s := r.spec.(type) {
	case *networking.ServiceEntry:
		for i, h := range s.Hosts {
			s.Hosts[i] = wire.QualifyHost(h, ns)
		}
		for _, p := range s.Ports {
			p.Protocol = strings.ToUpper(p.Protocol)
		}
	case *networking.VirtualService:
		for i, h := range s.Hosts {
			s.Hosts[i] = wire.QualifyHost(h, ns)
		}
		for _, h := range s.Http {
			for _, rd := range h.Route {
				if d := rd.GetDestination(); d != nil {
					d.Host = wire.QualifyHost(d.Host, ns)
				}
			}
		}
	case *networking.DestinationRule:
		s.Host = wire.QualifyHost(s.Host, ns)
	case *networking.WorkloadGroup:
		// Istio gives registered workloads both label sets, metadata's
		// winning; template.labels is where the registry reads them.
		if md := s.GetMetadata().GetLabels(); len(md) > 0 {
			if s.Template == nil {
				s.Template = &networking.WorkloadEntry{}
			}
			if s.Template.Labels == nil {
				s.Template.Labels = map[string]string{}
			}
			maps.Copy(s.Template.Labels, md)
		}
	}
}

// config builds the model from resources that are all valid.
func (p *parser) config() *model.Config {
	cfg := &model.Config{}
	for _, r := range p.resources {
		switch s := r.spec.(type) {
		case *networking.ServiceEntry:
			cfg.ServiceEntries = append(cfg.ServiceEntries, &model.ServiceEntry{Meta: r.meta, Spec: s})
		case *networking.WorkloadEntry:
			cfg.WorkloadEntries = append(cfg.WorkloadEntries, &model.WorkloadEntry{Meta: r.meta, Spec: s})
		case *networking.WorkloadGroup:
			cfg.WorkloadGroups = append(cfg.WorkloadGroups, &model.WorkloadGroup{Meta: r.meta, Spec: s})
		case *networking.VirtualService:
			cfg.VirtualServices = append(cfg.VirtualServices, &model.VirtualService{Meta: r.meta, Spec: s})
		case *networking.DestinationRule:
			cfg.DestinationRules = append(cfg.DestinationRules, &model.DestinationRule{Meta: r.meta, Spec: s})
		case *security.PeerAuthentication:
			cfg.PeerAuthentications = append(cfg.PeerAuthentications, &model.PeerAuthentication{Meta: r.meta, Spec: s})
		case *security.AuthorizationPolicy:
			cfg.AuthorizationPolicies = append(cfg.AuthorizationPolicies, &model.AuthorizationPolicy{Meta: r.meta, Spec: s})
		}
	}
	sortByName(cfg.ServiceEntries, func(x *model.ServiceEntry) *model.Meta { return &x.Meta })
	sortByName(cfg.WorkloadEntries, func(x *model.WorkloadEntry) *model.Meta { return &x.Meta })
	sortByName(cfg.WorkloadGroups, func(x *model.WorkloadGroup) *model.Meta { return &x.Meta })
	sortByName(cfg.VirtualServices, func(x *model.VirtualService) *model.Meta { return &x.Meta })
	sortByName(cfg.DestinationRules, func(x *model.DestinationRule) *model.Meta { return &x.Meta })
	sortByName(cfg.PeerAuthentications, func(x *model.PeerAuthentication) *model.Meta { return &x.Meta })
	sortByName(cfg.AuthorizationPolicies, func(x *model.AuthorizationPolicy) *model.Meta { return &x.Meta })
	cfg.RateLimitPolicies = p.rateLimitPolicies()
	return cfg
}

// sortByName sorts s by namespace, then name, keeping the order of
// equal ones.
func sortByName[T any](s []T, meta func(T) *model.Meta) {
	slices.SortStableFunc(s, func(x, y T) int {
		a, b := meta(x), meta(y)
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
}
