// Package config reads the mesh configuration, Istio networking and
// security resources written as YAML, and turns it into a validated,
// normalised model.Config.
//
// Decoding is strict. Every key must be a field of the Istio resource,
// and every field that is set must be one that meshlet implements.
// Anything else is an error that names the file, the resource, the field
// path and what would fix it; nothing is dropped quietly. All problems in a
// directory are reported at once, joined with errors.Join, and each of them
// is a *FieldError.
//
// The shortest correct use:
//
//	cfg, err := config.Load("/etc/meshlet")
//	if err != nil {
//		// one line per problem; errors.As(err, &fe) finds a *FieldError
//		return err
//	}
//	for _, vs := range cfg.VirtualServices { ... }
//
// Accepted kinds are ServiceEntry, WorkloadEntry, WorkloadGroup,
// VirtualService and DestinationRule of networking.istio.io (v1, v1beta1
// and v1alpha3), and PeerAuthentication and AuthorizationPolicy of
// security.istio.io (v1 and v1beta1). Hosts are expanded to fully
// qualified names (model.FQDN) in the namespace of the resource that names
// them.
//
// A document whose API group is not Istio's (istio.io or *.istio.io), such
// as a Kubernetes Service or Deployment kept beside the Istio config, is
// skipped, and WithSkipped reports it so that the caller can log it. Any
// kind of an Istio group that meshlet does not read is an error, and so is
// an apiVersion that looks like a typo of an Istio group.
//
// Security resources are checked as Istio checks them, plus what meshlet
// cannot enforce: portLevelMtls needs a selector, a namespace has at most
// one PeerAuthentication without a selector, AuthorizationPolicy actions
// are ALLOW or DENY, sources are peer identities (principals, namespaces,
// serviceAccounts), operations are methods, paths and ports, and the only
// condition is request.headers[<name>]. A DestinationRule's tls sets mode
// ISTIO_MUTUAL or DISABLE and nothing else.
//
// Every field accepted has an effect. What would have none is refused: a
// WorkloadEntry that no ServiceEntry selects, retry fields beside attempts
// 0, retryOn conditions no meshlet client acts on, gateways other than
// mesh. A WorkloadGroup's metadata.labels are merged into its
// template.labels, metadata's winning, as Istio labels the workloads.
//
// What a config may cost is bounded. Load reads only regular files (and
// symbolic links to them) of at most DefaultMaxFileSize bytes, and never
// blocks on a named pipe or a device. A regex in a match is at most
// DefaultMaxRegexLength bytes and compiles to at most
// DefaultMaxRegexProgramSize instructions. Options change the limits.
//
// Annotations are kept in model.Meta. Two are meshlet's own: a
// DestinationRule's model.LoadBalancerAnnotation, whose one value is
// PEAK_EWMA and which cannot be combined with consistentHash, and its
// model.CircuitBreakerAnnotation, whose settings are checked here.
package config
