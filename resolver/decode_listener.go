package resolver

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	localratelimitv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	rbacfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

const transportSocketTLS = "envoy.transport_sockets.tls"

var (
	routerName     = fullName(&routerv3.Router{})
	rbacFilterName = fullName(&rbacfilterv3.RBAC{})
	hcmName        = fullName(&hcmv3.HttpConnectionManager{})
	typedStructs   = []string{fullName(&xdstypev3.TypedStruct{}), "udpa.type.v1.TypedStruct"}
)

// convertListener converts a client Listener (api_listener) or a server
// Listener (address and one filter chain).
func convertListener(l *listenerv3.Listener) (Listener, error) {
	out := Listener{Name: l.GetName()}
	if api := l.GetApiListener(); api != nil {
		hcm := &hcmv3.HttpConnectionManager{}
		if err := unpack(api.GetApiListener(), hcm); err != nil {
			return Listener{}, fmt.Errorf("api_listener: %w", err)
		}
		if err := applyHCM(hcm, &out); err != nil {
			return Listener{}, fmt.Errorf("api_listener: %w", err)
		}
		if err := checkEnvoy(hcm); err != nil {
			return Listener{}, fmt.Errorf("api_listener: %w", err)
		}
		return out, nil
	}

	sa := l.GetAddress().GetSocketAddress()
	if sa == nil {
		return Listener{}, errors.New("address: a server Listener needs a socket address (a client Listener needs an api_listener)")
	}
	if _, err := netip.ParseAddr(sa.GetAddress()); err != nil {
		return Listener{}, fmt.Errorf("address: %q is not an IP address", sa.GetAddress())
	}
	port, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_PortValue)
	if !ok || port.PortValue == 0 || port.PortValue > 65535 {
		return Listener{}, errors.New("address: port_value must be a port number (named ports are not supported)")
	}
	out.Address, out.Port = sa.GetAddress(), port.PortValue
	if len(l.GetListenerFilters()) > 0 {
		return Listener{}, errors.New("listener_filters are not supported by meshlet")
	}

	chains := l.GetFilterChains()
	field := "filter_chains[0]"
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(slices.Clip(chains), d)
		if len(chains) == 1 {
			field = "default_filter_chain"
		}
	}
	if len(chains) != 1 {
		return Listener{}, fmt.Errorf("filter_chains: meshlet serves a Listener with exactly one filter chain, got %d", len(chains))
	}
	fc := chains[0]
	if m := fc.GetFilterChainMatch(); m != nil && !proto.Equal(m, &listenerv3.FilterChainMatch{}) {
		return Listener{}, fmt.Errorf("%s.filter_chain_match: not supported by meshlet (its one filter chain serves every connection)", field)
	}
	if ts := fc.GetTransportSocket(); ts != nil {
		tls, err := convertDownstreamTLS(ts)
		if err != nil {
			return Listener{}, fmt.Errorf("%s.transport_socket: %w", field, err)
		}
		out.TLS = tls
	}
	filters := fc.GetFilters()
	if len(filters) != 1 {
		return Listener{}, fmt.Errorf("%s.filters: want exactly one filter, an %s, got %d", field, hcmName, len(filters))
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := unpack(filters[0].GetTypedConfig(), hcm); err != nil {
		return Listener{}, fmt.Errorf("%s.filters[0] %q: %w", field, filters[0].GetName(), err)
	}
	if err := applyHCM(hcm, &out); err != nil {
		return Listener{}, fmt.Errorf("%s.filters[0] %q: %w", field, filters[0].GetName(), err)
	}
	if err := applyPathNormalization(hcm, &out); err != nil {
		return Listener{}, fmt.Errorf("%s.filters[0] %q: %w", field, filters[0].GetName(), err)
	}
	if err := checkEnvoy(hcm); err != nil {
		return Listener{}, fmt.Errorf("%s.filters[0] %q: %w", field, filters[0].GetName(), err)
	}
	return out, nil
}

// applyPathNormalization reads how a server rewrites request paths before
// authorization and the application see them. Only server Listeners have
// a use for it: a client sends the path it was given.
func applyPathNormalization(hcm *hcmv3.HttpConnectionManager, out *Listener) error {
	if hcm.GetPathNormalizationOptions() != nil {
		// Its transformations would be silently skipped otherwise.
		return errors.New("path_normalization_options is not supported by meshlet (use normalize_path, merge_slashes and path_with_escaped_slashes_action)")
	}
	out.NormalizePath = hcm.GetNormalizePath().GetValue()
	out.MergeSlashes = hcm.GetMergeSlashes()
	switch a := hcm.GetPathWithEscapedSlashesAction(); a {
	case hcmv3.HttpConnectionManager_IMPLEMENTATION_SPECIFIC_DEFAULT, hcmv3.HttpConnectionManager_KEEP_UNCHANGED:
		out.EscapedSlashes = KeepEscapedSlashes
	case hcmv3.HttpConnectionManager_REJECT_REQUEST:
		out.EscapedSlashes = RejectEscapedSlashes
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_REDIRECT:
		out.EscapedSlashes = RedirectEscapedSlashes
	case hcmv3.HttpConnectionManager_UNESCAPE_AND_FORWARD:
		out.EscapedSlashes = UnescapeEscapedSlashes
	default:
		return fmt.Errorf("path_with_escaped_slashes_action: unknown value %d", a)
	}
	return nil
}

// applyHCM reads the routes and HTTP filters of an HttpConnectionManager.
func applyHCM(hcm *hcmv3.HttpConnectionManager, out *Listener) error {
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		cs := rs.Rds.GetConfigSource()
		if cs.GetAds() == nil && cs.GetSelf() == nil {
			return errors.New("rds.config_source: must be ads or self (meshlet fetches routes over its ADS stream)")
		}
		if rs.Rds.GetRouteConfigName() == "" {
			return errors.New("rds.route_config_name: empty")
		}
		out.RouteConfigName = rs.Rds.GetRouteConfigName()
	case *hcmv3.HttpConnectionManager_RouteConfig:
		rc, err := convertRouteConfig(rs.RouteConfig)
		if err != nil {
			return fmt.Errorf("route_config: %w", err)
		}
		out.Inline = &rc
	case nil:
		return errors.New("sets neither rds nor route_config")
	default:
		return fmt.Errorf("%T is not supported by meshlet (use rds or route_config)", rs)
	}
	filters, err := convertHTTPFilters(hcm.GetHttpFilters())
	if err != nil {
		return fmt.Errorf("http_filters: %w", err)
	}
	out.HTTPFilters = filters
	return nil
}

// convertHTTPFilters converts the HTTP filters, which must end with the
// router. A filter meshlet does not implement is refused, unless it is
// marked is_optional, in which case it is skipped (as gRPC-Go does).
func convertHTTPFilters(filters []*hcmv3.HttpFilter) ([]HTTPFilter, error) {
	var out []HTTPFilter
	seen := map[string]bool{}
	router := false
	for i, f := range filters {
		at := fmt.Sprintf("[%d] %q", i, f.GetName())
		if f.GetName() == "" {
			return nil, fmt.Errorf("[%d]: filter without a name", i)
		}
		if seen[f.GetName()] {
			return nil, fmt.Errorf("%s: name used twice", at)
		}
		seen[f.GetName()] = true
		if router {
			return nil, fmt.Errorf("%s: comes after the router, which must be the last filter", at)
		}
		if f.GetConfigDiscovery() != nil {
			if f.GetIsOptional() {
				continue
			}
			return nil, fmt.Errorf("%s: config_discovery is not supported by meshlet", at)
		}
		cfg := f.GetTypedConfig()
		typ, err := filterType(cfg)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", at, err)
		}
		switch typ {
		case routerName:
			router = true
		case faultFilterName:
			if err := checkListenerFault(cfg); err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
		case rbacFilterName:
			rb := &rbacfilterv3.RBAC{}
			if err := unpackFilter(cfg, rb); err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			r, err := convertRBACFilter(rb)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			if err := checkEnvoy(rb); err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			out = append(out, HTTPFilter{Name: f.GetName(), Type: typ, RBAC: r})
		case localRateLimitName:
			// Decoded even when optional: meshlet enforces it.
			lrl := &localratelimitv3.LocalRateLimit{}
			if err := unpackFilter(cfg, lrl); err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			rl, err := convertLocalRateLimit(f.GetName(), lrl)
			if err == nil {
				err = checkEnvoy(lrl)
			}
			if err != nil {
				return nil, fmt.Errorf("%s: %w", at, err)
			}
			out = append(out, HTTPFilter{Name: f.GetName(), Type: typ, RateLimit: rl})
		default:
			if f.GetIsOptional() {
				continue
			}
			return nil, fmt.Errorf("%s: filter type %s is not supported by meshlet (mark it is_optional to let clients skip it)", at, typ)
		}
	}
	if !router {
		return nil, fmt.Errorf("no %s filter (it must be the last HTTP filter)", routerName)
	}
	return out, nil
}

// filterType is the config type of a filter, looking inside a TypedStruct.
func filterType(cfg *anypb.Any) (string, error) {
	if cfg == nil {
		return "", errors.New("no typed_config")
	}
	typ := messageName(cfg.GetTypeUrl())
	if slices.Contains(typedStructs, typ) {
		ts := &xdstypev3.TypedStruct{}
		if err := proto.Unmarshal(cfg.GetValue(), ts); err != nil {
			return "", fmt.Errorf("cannot unmarshal %s: %w", typ, err)
		}
		return messageName(ts.GetTypeUrl()), nil
	}
	return typ, nil
}

// unpackFilter unpacks a filter config; one given as a TypedStruct is
// refused, as meshlet reads the typed form only.
func unpackFilter(cfg *anypb.Any, m proto.Message) error {
	if slices.Contains(typedStructs, messageName(cfg.GetTypeUrl())) {
		return fmt.Errorf("%s given as a TypedStruct: meshlet reads the typed config only", fullName(m))
	}
	return unpack(cfg, m)
}

// convertDownstreamTLS reads a server's TLS requirement.
func convertDownstreamTLS(ts *corev3.TransportSocket) (*DownstreamTLS, error) {
	if ts.GetName() != transportSocketTLS {
		return nil, fmt.Errorf("name %q, want %q", ts.GetName(), transportSocketTLS)
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := unpack(ts.GetTypedConfig(), ctx); err != nil {
		return nil, err
	}
	common := ctx.GetCommonTlsContext()
	if common == nil {
		return nil, errors.New("DownstreamTlsContext without a common_tls_context")
	}
	if err := checkCommonTLS(common); err != nil {
		return nil, err
	}
	if common.GetTlsCertificateProviderInstance() == nil && common.GetTlsCertificateCertificateProviderInstance() == nil { //nolint:staticcheck // gRPC-Go still reads the old field
		return nil, errors.New("common_tls_context: a server needs tls_certificate_provider_instance, its own certificate")
	}
	if ctx.GetRequireSni().GetValue() {
		return nil, errors.New("require_sni is not supported by meshlet")
	}
	if err := checkEnvoy(ctx); err != nil {
		return nil, err
	}
	return &DownstreamTLS{RequireClientCert: ctx.GetRequireClientCertificate().GetValue()}, nil
}

// checkCommonTLS refuses what gRPC-Go refuses in a CommonTlsContext.
func checkCommonTLS(c *tlsv3.CommonTlsContext) error {
	switch {
	case c.GetTlsParams() != nil:
		return errors.New("common_tls_context.tls_params is not supported by meshlet")
	case c.GetCustomHandshaker() != nil:
		return errors.New("common_tls_context.custom_handshaker is not supported by meshlet")
	case len(c.GetTlsCertificates()) > 0 || len(c.GetTlsCertificateSdsSecretConfigs()) > 0:
		return errors.New("common_tls_context: certificates must come from tls_certificate_provider_instance (inline and SDS certificates are not supported by meshlet)")
	}
	return nil
}

// convertRBACFilter converts an RBAC filter config; nil rules is a filter
// that allows everything.
func convertRBACFilter(f *rbacfilterv3.RBAC) (*RBAC, error) {
	if f.GetMatcher() != nil || f.GetShadowMatcher() != nil {
		return nil, errors.New("RBAC matcher is not supported by meshlet (use rules)")
	}
	rules := f.GetRules()
	if rules == nil {
		return nil, nil
	}
	out := &RBAC{}
	switch rules.GetAction() {
	case rbacv3.RBAC_ALLOW:
		out.Action = RBACAllow
	case rbacv3.RBAC_DENY:
		out.Action = RBACDeny
	case rbacv3.RBAC_LOG:
		out.Action = RBACLog
	default:
		return nil, fmt.Errorf("rules.action: unknown value %d", rules.GetAction())
	}
	names := make([]string, 0, len(rules.GetPolicies()))
	for n := range rules.GetPolicies() {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		p, err := convertPolicy(rules.GetPolicies()[n])
		if err != nil {
			return nil, fmt.Errorf("rules.policies[%q]: %w", n, err)
		}
		p.Name = n
		out.Policies = append(out.Policies, p)
	}
	return out, nil
}

func convertPolicy(p *rbacv3.Policy) (RBACPolicy, error) {
	if p == nil {
		return RBACPolicy{}, errors.New("missing policy")
	}
	if p.GetCondition() != nil || p.GetCheckedCondition() != nil {
		return RBACPolicy{}, errors.New("condition (CEL) is not supported by meshlet")
	}
	if len(p.GetPermissions()) == 0 || len(p.GetPrincipals()) == 0 {
		return RBACPolicy{}, errors.New("a policy needs permissions and principals")
	}
	var out RBACPolicy
	for i, perm := range p.GetPermissions() {
		c, err := convertPermission(perm, 0)
		if err != nil {
			return RBACPolicy{}, fmt.Errorf("permissions[%d]: %w", i, err)
		}
		out.Permissions = append(out.Permissions, c)
	}
	for i, id := range p.GetPrincipals() {
		c, err := convertPrincipal(id, 0)
		if err != nil {
			return RBACPolicy{}, fmt.Errorf("principals[%d]: %w", i, err)
		}
		out.Principals = append(out.Principals, c)
	}
	return out, nil
}

// maxRBACDepth bounds the nesting of permission and principal trees.
const maxRBACDepth = 64

func convertPermission(p *rbacv3.Permission, depth int) (Permission, error) {
	if depth > maxRBACDepth {
		return Permission{}, fmt.Errorf("nested more than %d deep", maxRBACDepth)
	}
	set := func(kind PermissionKind, rules []*rbacv3.Permission) (Permission, error) {
		out := Permission{Kind: kind}
		if len(rules) == 0 {
			return Permission{}, fmt.Errorf("%s: empty", kind)
		}
		for i, r := range rules {
			c, err := convertPermission(r, depth+1)
			if err != nil {
				return Permission{}, fmt.Errorf("%s[%d]: %w", kind, i, err)
			}
			out.Rules = append(out.Rules, c)
		}
		return out, nil
	}
	switch r := p.GetRule().(type) {
	case *rbacv3.Permission_Any:
		if !r.Any {
			return Permission{}, errors.New("any: must be true")
		}
		return Permission{Kind: PermissionAny}, nil
	case *rbacv3.Permission_AndRules:
		return set(PermissionAnd, r.AndRules.GetRules())
	case *rbacv3.Permission_OrRules:
		return set(PermissionOr, r.OrRules.GetRules())
	case *rbacv3.Permission_NotRule:
		if r.NotRule == nil {
			return Permission{}, errors.New("not_rule: empty")
		}
		return set(PermissionNot, []*rbacv3.Permission{r.NotRule})
	case *rbacv3.Permission_Header:
		h, err := convertHeaderMatcher(r.Header)
		if err != nil {
			return Permission{}, fmt.Errorf("header: %w", err)
		}
		return Permission{Kind: PermissionHeader, Header: h}, nil
	case *rbacv3.Permission_UrlPath:
		s, err := convertStringMatcher(r.UrlPath.GetPath())
		if err != nil {
			return Permission{}, fmt.Errorf("url_path: %w", err)
		}
		return Permission{Kind: PermissionURLPath, String: s}, nil
	case *rbacv3.Permission_DestinationIp:
		c, err := convertCIDR(r.DestinationIp)
		if err != nil {
			return Permission{}, fmt.Errorf("destination_ip: %w", err)
		}
		return Permission{Kind: PermissionDestinationIP, CIDR: c}, nil
	case *rbacv3.Permission_DestinationPort:
		if r.DestinationPort > 65535 {
			return Permission{}, fmt.Errorf("destination_port: %d is not a port", r.DestinationPort)
		}
		return Permission{Kind: PermissionDestinationPort, Port: r.DestinationPort}, nil
	case *rbacv3.Permission_DestinationPortRange:
		start, end := r.DestinationPortRange.GetStart(), r.DestinationPortRange.GetEnd()
		if start < 0 || end > 65536 || start > end {
			return Permission{}, fmt.Errorf("destination_port_range: [%d, %d) is not a port range", start, end)
		}
		return Permission{Kind: PermissionDestinationPortRange, Port: uint32(start), PortEnd: uint32(end)}, nil
	case *rbacv3.Permission_RequestedServerName:
		s, err := convertStringMatcher(r.RequestedServerName)
		if err != nil {
			return Permission{}, fmt.Errorf("requested_server_name: %w", err)
		}
		return Permission{Kind: PermissionRequestedServerName, String: s}, nil
	case nil:
		return Permission{}, errors.New("sets no rule")
	default:
		return Permission{}, fmt.Errorf("%s is not supported by meshlet", oneofName(p, "rule"))
	}
}

func convertPrincipal(p *rbacv3.Principal, depth int) (Principal, error) {
	if depth > maxRBACDepth {
		return Principal{}, fmt.Errorf("nested more than %d deep", maxRBACDepth)
	}
	set := func(kind PrincipalKind, ids []*rbacv3.Principal) (Principal, error) {
		out := Principal{Kind: kind}
		if len(ids) == 0 {
			return Principal{}, fmt.Errorf("%s: empty", kind)
		}
		for i, id := range ids {
			c, err := convertPrincipal(id, depth+1)
			if err != nil {
				return Principal{}, fmt.Errorf("%s[%d]: %w", kind, i, err)
			}
			out.IDs = append(out.IDs, c)
		}
		return out, nil
	}
	cidr := func(kind PrincipalKind, c *corev3.CidrRange) (Principal, error) {
		p, err := convertCIDR(c)
		if err != nil {
			return Principal{}, fmt.Errorf("%s: %w", kind, err)
		}
		return Principal{Kind: kind, CIDR: p}, nil
	}
	switch id := p.GetIdentifier().(type) {
	case *rbacv3.Principal_Any:
		if !id.Any {
			return Principal{}, errors.New("any: must be true")
		}
		return Principal{Kind: PrincipalAny}, nil
	case *rbacv3.Principal_AndIds:
		return set(PrincipalAnd, id.AndIds.GetIds())
	case *rbacv3.Principal_OrIds:
		return set(PrincipalOr, id.OrIds.GetIds())
	case *rbacv3.Principal_NotId:
		if id.NotId == nil {
			return Principal{}, errors.New("not_id: empty")
		}
		return set(PrincipalNot, []*rbacv3.Principal{id.NotId})
	case *rbacv3.Principal_Authenticated_:
		out := Principal{Kind: PrincipalAuthenticated}
		if pn := id.Authenticated.GetPrincipalName(); pn != nil {
			s, err := convertStringMatcher(pn)
			if err != nil {
				return Principal{}, fmt.Errorf("authenticated.principal_name: %w", err)
			}
			out.Name = &s
		}
		return out, nil
	case *rbacv3.Principal_SourceIp:
		return cidr(PrincipalSourceIP, id.SourceIp)
	case *rbacv3.Principal_DirectRemoteIp:
		return cidr(PrincipalDirectRemoteIP, id.DirectRemoteIp)
	case *rbacv3.Principal_RemoteIp:
		return cidr(PrincipalRemoteIP, id.RemoteIp)
	case *rbacv3.Principal_Header:
		h, err := convertHeaderMatcher(id.Header)
		if err != nil {
			return Principal{}, fmt.Errorf("header: %w", err)
		}
		return Principal{Kind: PrincipalHeader, Header: h}, nil
	case *rbacv3.Principal_UrlPath:
		s, err := convertStringMatcher(id.UrlPath.GetPath())
		if err != nil {
			return Principal{}, fmt.Errorf("url_path: %w", err)
		}
		return Principal{Kind: PrincipalURLPath, String: s}, nil
	case nil:
		return Principal{}, errors.New("sets no identifier")
	default:
		return Principal{}, fmt.Errorf("%s is not supported by meshlet", oneofName(p, "identifier"))
	}
}

// oneofName names the field set in oneof of m, for messages.
func oneofName(m proto.Message, oneof string) string {
	r := m.ProtoReflect()
	od := r.Descriptor().Oneofs().ByName(protoreflect.Name(oneof))
	if od == nil {
		return oneof
	}
	if fd := r.WhichOneof(od); fd != nil {
		return string(fd.Name())
	}
	return oneof
}
