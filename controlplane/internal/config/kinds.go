package config

import (
	"fmt"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1alpha3"
	security "istio.io/api/security/v1beta1"
)

// The API groups of the kinds meshlet reads or names. Every group that is
// istio.io or ends in .istio.io is Istio's (isIstioGroup): a document of
// any other group is not Istio config, and Load skips it.
const (
	networkingGroup = "networking.istio.io"
	securityGroup   = "security.istio.io"
	telemetryGroup  = "telemetry.istio.io"
	extensionsGroup = "extensions.istio.io"
	installGroup    = "install.istio.io"

	kindList = "ServiceEntry, WorkloadEntry, WorkloadGroup, VirtualService, DestinationRule, PeerAuthentication, AuthorizationPolicy"
)

// kindInfo is what meshlet knows about one kind it reads.
type kindInfo struct {
	group   string // API group: networking.istio.io or security.istio.io
	newSpec func() proto.Message
	support *support // the fields of the spec that meshlet implements
}

var (
	// apiVersions are the accepted versions of each API group.
	apiVersions = map[string][]string{
		networkingGroup: {"v1", "v1beta1", "v1alpha3"},
		securityGroup:   {"v1", "v1beta1"},
	}

	// kinds maps each supported kind to its group, a new, empty spec and
	// the fields of it that meshlet implements.
	kinds = map[string]kindInfo{
		"ServiceEntry":        {networkingGroup, func() proto.Message { return &networking.ServiceEntry{} }, serviceEntrySupport},
		"WorkloadEntry":       {networkingGroup, func() proto.Message { return &networking.WorkloadEntry{} }, workloadEntrySupport},
		"WorkloadGroup":       {networkingGroup, func() proto.Message { return &networking.WorkloadGroup{} }, workloadGroupSupport},
		"VirtualService":      {networkingGroup, func() proto.Message { return &networking.VirtualService{} }, virtualServiceSupport},
		"DestinationRule":     {networkingGroup, func() proto.Message { return &networking.DestinationRule{} }, destinationRuleSupport},
		"PeerAuthentication":  {securityGroup, func() proto.Message { return &security.PeerAuthentication{} }, peerAuthenticationSupport},
		"AuthorizationPolicy": {securityGroup, func() proto.Message { return &security.AuthorizationPolicy{} }, authorizationPolicySupport},
	}

	// otherKinds are the Istio kinds that meshlet refuses, by group, and
	// why: planned, or out of scope for a proxyless mesh.
	otherKinds = map[string]map[string]string{
		networkingGroup: {
			"Gateway":     "is out of scope for meshlet: a proxyless mesh has no gateway proxy (remove it)",
			"Sidecar":     "is out of scope for meshlet: there is no sidecar proxy to configure (remove it)",
			"EnvoyFilter": "is out of scope for meshlet: there is no Envoy to patch (remove it)",
			"ProxyConfig": "is out of scope for meshlet: there is no proxy to configure (remove it)",
		},
		securityGroup: {
			"RequestAuthentication": "is planned, not yet supported: JWT request authentication is on meshlet's roadmap (remove it for now; AuthorizationPolicy can check callers' mTLS identities)",
		},
		telemetryGroup: {
			"Telemetry": "is planned, not yet supported: each service turns on its own tracing, metrics and access logs (mesh.WithTelemetry and the OTEL_* environment: see docs/telemetry.md), not the control plane (remove it)",
		},
		extensionsGroup: {
			"WasmPlugin": "is out of scope for meshlet: Wasm plugins run inside Envoy, and there is no Envoy (remove it; write the logic as HTTP middleware or a gRPC interceptor)",
		},
		installGroup: {
			"IstioOperator": "is out of scope for meshlet: it installs istiod and its proxies, and meshlet has neither (remove it)",
		},
	}

	// removedGroups are Istio API groups that Istio itself has removed,
	// and what replaced them.
	removedGroups = map[string]string{
		"rbac.istio.io":           "Istio removed this API group (use AuthorizationPolicy of security.istio.io)",
		"authentication.istio.io": "Istio removed this API group (use PeerAuthentication of security.istio.io)",
		"config.istio.io":         "Istio removed this API group with Mixer (remove it)",
	}
)

// Skipped is a document that Load passed over because its kind is not in
// one of Istio's API groups: a Kubernetes Service, Deployment or ConfigMap
// kept beside the Istio config, as Istio's own samples do.
type Skipped struct {
	// File is the path of the file, relative to the directory given to
	// Load.
	File       string
	APIVersion string
	Kind       string
	// Namespace and Name are as written in metadata; either may be empty.
	Namespace, Name string
}

// WithSkipped has Load and Parse call f once for each document they skip
// (see Skipped), in the order of the files and of the documents in them,
// before they return; they call it even when they return an error. f runs
// on the goroutine that called Load or Parse.
func WithSkipped(f func(Skipped)) Option {
	return optionFunc(func(o *options) { o.skipped = f })
}

// isIstioGroup reports whether an API group is one of Istio's.
func isIstioGroup(group string) bool {
	return group == "istio.io" || strings.HasSuffix(group, ".istio.io")
}

// nearIstioGroup returns the Istio group that group is probably a typo
// of, for a document of kind, or "". A typo would otherwise make Istio
// config look like something else, and be skipped.
func nearIstioGroup(group, kind string) string {
	if group == "" || isIstioGroup(group) {
		return ""
	}
	near := closest(group, []string{networkingGroup, securityGroup, telemetryGroup, extensionsGroup})
	if near == "" && strings.Contains(strings.ToLower(group), "istio") {
		near = networkingGroup
	}
	if g := istioKindGroup(kind); near != "" && g != "" {
		return g // the kind says which group was meant
	}
	return near
}

// istioKindGroup returns the group of an Istio kind that meshlet reads or
// names, or "".
func istioKindGroup(kind string) string {
	if info, ok := kinds[kind]; ok {
		return info.group
	}
	for g, ks := range otherKinds {
		if _, ok := ks[kind]; ok {
			return g
		}
	}
	return ""
}

// kind classifies a document by apiVersion and kind. It returns the kind's
// info if the document is one that meshlet reads. Otherwise it has either
// reported an error or recorded the document as skipped.
func (p *parser) kind(file, resName, apiVersion, kind, name string, obj map[string]any) (kindInfo, bool) {
	group, version, hasGroup := strings.Cut(apiVersion, "/")
	if !hasGroup {
		group, version = "", apiVersion // the core group: "v1"
	}
	if !isIstioGroup(group) {
		ig := istioKindGroup(kind)
		switch near := nearIstioGroup(group, kind); {
		case near != "":
			p.add(file, resName, "apiVersion", "apiVersion %q: %s is not an Istio API group (did you mean %s?)", apiVersion, group, near)
		case ig != "" && group == "" && otherKinds[ig][kind] != "":
			p.add(file, resName, "kind", "kind %s %s", kind, otherKinds[ig][kind])
		case ig != "" && group == "":
			// An Istio kind without its group: a mistake, not a
			// Kubernetes object (the core group has no such kind).
			p.add(file, resName, "apiVersion", "apiVersion %q is not supported for %s (use %s)", apiVersion, kind, versionList(ig))
		case apiVersion == "":
			p.add(file, resName, "apiVersion", "required (such as networking.istio.io/v1)")
		case group == "" && kind == "List" && holdsIstio(obj["items"]):
			p.add(file, resName, "kind", "a List of Istio resources is not read (write each resource as a document of its own, separated by ---)")
		default:
			p.skipped = append(p.skipped, Skipped{File: file, APIVersion: apiVersion, Kind: kind, Namespace: namespaceOf(obj), Name: name})
		}
		return kindInfo{}, false
	}

	if reason, ok := removedGroups[group]; ok {
		p.add(file, resName, "apiVersion", "apiVersion %q: %s", apiVersion, reason)
		return kindInfo{}, false
	}
	if reason, ok := otherKinds[group][kind]; ok {
		p.add(file, resName, "kind", "kind %s %s", kind, reason)
		return kindInfo{}, false
	}
	info, ok := kinds[kind]
	if !ok {
		p.add(file, resName, "kind", "kind %s is not a kind of %s%s", kind, group, suggestKind(kind, group))
		return kindInfo{}, false
	}
	if group != info.group || !slices.Contains(apiVersions[group], version) {
		p.add(file, resName, "apiVersion", "apiVersion %q is not supported for %s (use %s)", apiVersion, kind, versionList(info.group))
		return kindInfo{}, false
	}
	return info, true
}

// versionList names the accepted apiVersions of a group:
// "networking.istio.io/v1, v1beta1 or v1alpha3".
func versionList(group string) string {
	versions := apiVersions[group]
	switch len(versions) {
	case 0:
		return group + "/v1"
	case 1:
		return group + "/" + versions[0]
	}
	return group + "/" + strings.Join(versions[:len(versions)-1], ", ") + " or " + versions[len(versions)-1]
}

// suggestKind proposes the Istio kind that kind was probably meant to be,
// as " (did you mean VirtualService?)", naming its group when it is not
// group; or says which kinds meshlet reads.
func suggestKind(kind, group string) string {
	var names []string
	for k := range kinds {
		names = append(names, k)
	}
	for _, ks := range otherKinds {
		for k := range ks {
			names = append(names, k)
		}
	}
	slices.Sort(names)
	best := closest(kind, names)
	switch g := istioKindGroup(best); {
	case best == "":
		return " (meshlet reads ServiceEntry, WorkloadEntry, WorkloadGroup, VirtualService and DestinationRule of networking.istio.io, and PeerAuthentication and AuthorizationPolicy of security.istio.io)"
	case g != group:
		return fmt.Sprintf(" (did you mean %s of %s?)", best, g)
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

// holdsIstio reports whether the items of a List include an Istio
// resource, which skipping the List would drop without a word.
func holdsIstio(items any) bool {
	list, _ := items.([]any)
	for _, it := range list {
		obj, _ := it.(map[string]any)
		av, _ := obj["apiVersion"].(string)
		kind, _ := obj["kind"].(string)
		if group, _, _ := strings.Cut(av, "/"); isIstioGroup(group) || nearIstioGroup(group, kind) != "" {
			return true
		}
	}
	return false
}

// namespaceOf returns metadata.namespace as written, or "".
func namespaceOf(obj map[string]any) string {
	md, _ := obj["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	return ns
}
