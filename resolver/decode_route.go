package resolver

import (
	"errors"
	"fmt"
	"regexp"
	"strings"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshlet/meshlet/internal/envoydefaults"
)

// Envoy's retry back-off defaults.
const (
	defaultRetryBase = envoydefaults.RetryBaseInterval
	retryMaxFactor   = envoydefaults.RetryMaxFactor
)

var filterConfigName = fullName(&routev3.FilterConfig{})

func convertRouteConfig(rc *routev3.RouteConfiguration) (RouteConfig, error) {
	if rc == nil {
		return RouteConfig{}, errors.New("missing")
	}
	out := RouteConfig{Name: rc.GetName()}
	if len(rc.GetClusterSpecifierPlugins()) > 0 {
		return RouteConfig{}, errors.New("cluster_specifier_plugins are not supported by meshlet")
	}
	if rc.GetVhds() != nil {
		return RouteConfig{}, errors.New("vhds is not supported by meshlet")
	}
	if err := checkPerFilterConfig(rc.GetTypedPerFilterConfig()); err != nil {
		return RouteConfig{}, err
	}
	for i, vh := range rc.GetVirtualHosts() {
		v, err := convertVirtualHost(vh)
		if err != nil {
			return RouteConfig{}, fmt.Errorf("virtual_hosts[%d] %q: %w", i, vh.GetName(), err)
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	return out, nil
}

func convertVirtualHost(vh *routev3.VirtualHost) (VirtualHost, error) {
	out := VirtualHost{Name: vh.GetName()}
	if len(vh.GetDomains()) == 0 {
		return VirtualHost{}, errors.New("domains: empty")
	}
	for i, d := range vh.GetDomains() {
		if domainKind(d) == domainInvalid {
			return VirtualHost{}, fmt.Errorf("domains[%d]: %q is not a domain pattern (a name, \"*\", \"*suffix\" or \"prefix*\")", i, d)
		}
	}
	out.Domains = vh.GetDomains()
	if err := checkPerFilterConfig(vh.GetTypedPerFilterConfig()); err != nil {
		return VirtualHost{}, err
	}
	if vh.GetRequireTls() != routev3.VirtualHost_NONE {
		return VirtualHost{}, errors.New("require_tls is not supported by meshlet")
	}
	retry, err := convertRetryPolicy(vh.GetRetryPolicy())
	if err != nil {
		return VirtualHost{}, fmt.Errorf("retry_policy: %w", err)
	}
	for i, r := range vh.GetRoutes() {
		rt, err := convertRoute(r, retry)
		if err != nil {
			return VirtualHost{}, fmt.Errorf("routes[%d] %q: %w", i, r.GetName(), err)
		}
		out.Routes = append(out.Routes, rt)
	}
	return out, nil
}

// checkPerFilterConfig refuses per-route filter configs other than
// optional ones: meshlet's filters take none.
func checkPerFilterConfig(m map[string]*anypb.Any) error {
	for name, cfg := range m {
		if messageName(cfg.GetTypeUrl()) == filterConfigName {
			fc := &routev3.FilterConfig{}
			if err := proto.Unmarshal(cfg.GetValue(), fc); err == nil && fc.GetIsOptional() {
				continue
			}
		}
		return fmt.Errorf("typed_per_filter_config[%q]: per-route filter config is not supported by meshlet", name)
	}
	return nil
}

func convertRoute(r *routev3.Route, vhRetry *RetryPolicy) (Route, error) {
	out := Route{Name: r.GetName()}
	m, err := convertRouteMatch(r.GetMatch())
	if err != nil {
		return Route{}, fmt.Errorf("match: %w", err)
	}
	out.Match = m
	fault, perFilter, err := routeFault(r.GetTypedPerFilterConfig())
	if err != nil {
		return Route{}, err
	}
	out.Fault = fault
	if err := checkPerFilterConfig(perFilter); err != nil {
		return Route{}, err
	}
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		act, err := convertRouteAction(a.Route, vhRetry)
		if err != nil {
			return Route{}, fmt.Errorf("route: %w", err)
		}
		out.Action = act
	case *routev3.Route_NonForwardingAction:
		out.NonForwarding = true
		if fault != nil {
			return Route{}, errors.New("a fault on a server route is not supported by meshlet (clients inject faults, on their routes)")
		}
	case nil:
		return Route{}, errors.New("sets no action")
	default:
		return Route{}, fmt.Errorf("%s is not supported by meshlet (use route or non_forwarding_action)", oneofName(r, "action"))
	}
	return out, nil
}

func convertRouteMatch(m *routev3.RouteMatch) (RouteMatch, error) {
	if m == nil {
		return RouteMatch{}, errors.New("missing")
	}
	var out RouteMatch
	switch p := m.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		out.Kind, out.Path = PathPrefix, p.Prefix
	case *routev3.RouteMatch_Path:
		out.Kind, out.Path = PathExact, p.Path
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return RouteMatch{}, fmt.Errorf("safe_regex: %w", err)
		}
		out.Kind, out.Path, out.Regex = PathRegex, p.SafeRegex.GetRegex(), re
	case nil:
		return RouteMatch{}, errors.New("sets no path match (prefix, path or safe_regex)")
	default:
		return RouteMatch{}, fmt.Errorf("%s is not supported by meshlet (use prefix, path or safe_regex)", oneofName(m, "path_specifier"))
	}
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		out.CaseInsensitive = true
	}
	for i, h := range m.GetHeaders() {
		hm, err := convertHeaderMatcher(h)
		if err != nil {
			return RouteMatch{}, fmt.Errorf("headers[%d]: %w", i, err)
		}
		out.Headers = append(out.Headers, hm)
	}
	for i, q := range m.GetQueryParameters() {
		qm := QueryParamMatch{Name: q.GetName()}
		if q.GetName() == "" {
			return RouteMatch{}, fmt.Errorf("query_parameters[%d]: no name", i)
		}
		switch s := q.GetQueryParameterMatchSpecifier().(type) {
		case *routev3.QueryParameterMatcher_PresentMatch:
			if !s.PresentMatch {
				return RouteMatch{}, fmt.Errorf("query_parameters[%d] %q: present_match false is not supported by meshlet", i, q.GetName())
			}
			qm.Present = true
		case *routev3.QueryParameterMatcher_StringMatch:
			sm, err := convertStringMatcher(s.StringMatch)
			if err != nil {
				return RouteMatch{}, fmt.Errorf("query_parameters[%d] %q: %w", i, q.GetName(), err)
			}
			qm.String = sm
		default:
			return RouteMatch{}, fmt.Errorf("query_parameters[%d] %q: sets no match", i, q.GetName())
		}
		out.QueryParams = append(out.QueryParams, qm)
	}
	if f := m.GetRuntimeFraction(); f != nil {
		pm, err := perMillion(f.GetDefaultValue())
		if err != nil {
			return RouteMatch{}, fmt.Errorf("runtime_fraction: %w", err)
		}
		out.Fraction = &pm
	}
	switch {
	case m.GetGrpc() != nil:
		return RouteMatch{}, errors.New("grpc is not supported by meshlet")
	case m.GetTlsContext() != nil:
		return RouteMatch{}, errors.New("tls_context is not supported by meshlet")
	case len(m.GetDynamicMetadata()) > 0:
		return RouteMatch{}, errors.New("dynamic_metadata is not supported by meshlet")
	case len(m.GetFilterState()) > 0:
		return RouteMatch{}, errors.New("filter_state is not supported by meshlet")
	}
	return out, nil
}

func convertRouteAction(a *routev3.RouteAction, vhRetry *RetryPolicy) (RouteAction, error) {
	var out RouteAction
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return RouteAction{}, errors.New("cluster: empty")
		}
		out.Cluster = cs.Cluster
	case *routev3.RouteAction_WeightedClusters:
		var total uint64
		for i, c := range cs.WeightedClusters.GetClusters() {
			if c.GetName() == "" {
				return RouteAction{}, fmt.Errorf("weighted_clusters.clusters[%d]: no name (cluster_header is not supported by meshlet)", i)
			}
			if err := checkPerFilterConfig(c.GetTypedPerFilterConfig()); err != nil {
				return RouteAction{}, fmt.Errorf("weighted_clusters.clusters[%d]: %w", i, err)
			}
			w := c.GetWeight().GetValue()
			if w == 0 {
				continue
			}
			if err := addWeight(&total, w); err != nil {
				return RouteAction{}, fmt.Errorf("weighted_clusters: %w", err)
			}
			out.WeightedClusters = append(out.WeightedClusters, WeightedCluster{Name: c.GetName(), Weight: w})
		}
		if total == 0 {
			return RouteAction{}, errors.New("weighted_clusters: the weights sum to 0")
		}
	case nil:
		return RouteAction{}, errors.New("names no cluster")
	default:
		return RouteAction{}, fmt.Errorf("%s is not supported by meshlet (use cluster or weighted_clusters)", oneofName(a, "cluster_specifier"))
	}

	timeout, err := duration(a.GetTimeout(), "timeout")
	if err != nil {
		return RouteAction{}, err
	}
	msd, err := duration(a.GetMaxStreamDuration().GetMaxStreamDuration(), "max_stream_duration.max_stream_duration")
	if err != nil {
		return RouteAction{}, err
	}
	out.Timeout = timeout
	if msd > 0 && (out.Timeout == 0 || msd < out.Timeout) {
		out.Timeout = msd
	}

	out.Retry = vhRetry
	if rp := a.GetRetryPolicy(); rp != nil {
		if out.Retry, err = convertRetryPolicy(rp); err != nil {
			return RouteAction{}, fmt.Errorf("retry_policy: %w", err)
		}
	}
	for i, hp := range a.GetHashPolicy() {
		h, ok, err := convertHashPolicy(hp)
		if err != nil {
			return RouteAction{}, fmt.Errorf("hash_policy[%d]: %w", i, err)
		}
		if ok {
			out.HashPolicies = append(out.HashPolicies, h)
		}
	}

	switch {
	case a.GetPrefixRewrite() != "" || a.GetRegexRewrite() != nil || a.GetPathRewritePolicy() != nil:
		return RouteAction{}, errors.New("path rewriting is not supported by meshlet")
	case a.GetHostRewriteSpecifier() != nil:
		return RouteAction{}, fmt.Errorf("%s is not supported by meshlet", oneofName(a, "host_rewrite_specifier"))
	case len(a.GetRequestMirrorPolicies()) > 0:
		return RouteAction{}, errors.New("request_mirror_policies are not supported by meshlet")
	}
	return out, nil
}

// convertRetryPolicy converts a retry policy with Envoy's defaults; nil
// stays nil. As gRPC-Go, it refuses num_retries 0 and back-off intervals
// that are not positive.
func convertRetryPolicy(rp *routev3.RetryPolicy) (*RetryPolicy, error) {
	if rp == nil {
		return nil, nil
	}
	out := &RetryPolicy{NumRetries: 1, RetriableStatusCodes: rp.GetRetriableStatusCodes()}
	for _, on := range strings.Split(rp.GetRetryOn(), ",") {
		if on = strings.ToLower(strings.TrimSpace(on)); on != "" {
			out.RetryOn = append(out.RetryOn, on)
		}
	}
	if n := rp.GetNumRetries(); n != nil {
		if n.GetValue() < 1 {
			return nil, errors.New("num_retries: must be at least 1")
		}
		out.NumRetries = n.GetValue()
	}
	var err error
	if out.PerTryTimeout, err = duration(rp.GetPerTryTimeout(), "per_try_timeout"); err != nil {
		return nil, err
	}
	out.BackoffBase = defaultRetryBase
	if b := rp.GetRetryBackOff(); b != nil {
		if out.BackoffBase, err = duration(b.GetBaseInterval(), "retry_back_off.base_interval"); err != nil {
			return nil, err
		}
		if out.BackoffBase <= 0 {
			return nil, errors.New("retry_back_off.base_interval: must be positive")
		}
	}
	out.BackoffMax = retryMaxFactor * out.BackoffBase
	if m := rp.GetRetryBackOff().GetMaxInterval(); m != nil {
		if out.BackoffMax, err = duration(m, "retry_back_off.max_interval"); err != nil {
			return nil, err
		}
		if out.BackoffMax < out.BackoffBase {
			return nil, fmt.Errorf("retry_back_off.max_interval: %v is less than base_interval %v", out.BackoffMax, out.BackoffBase)
		}
	}
	return out, nil
}

// convertHashPolicy converts one hash policy. ok is false for a policy
// that hashes nothing meshlet can see (filter_state, or source_ip false),
// which is skipped as Envoy skips a policy that yields no value.
func convertHashPolicy(hp *routev3.RouteAction_HashPolicy) (h HashPolicy, ok bool, err error) {
	h.Terminal = hp.GetTerminal()
	switch p := hp.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		h.Kind, h.Name = HashHeader, strings.ToLower(p.Header.GetHeaderName())
		if h.Name == "" {
			return HashPolicy{}, false, errors.New("header.header_name: empty")
		}
		if rr := p.Header.GetRegexRewrite(); rr != nil {
			re, err := regexp.Compile(rr.GetPattern().GetRegex())
			if err != nil {
				return HashPolicy{}, false, fmt.Errorf("header.regex_rewrite: bad regex %q: %w", rr.GetPattern().GetRegex(), err)
			}
			h.Regex, h.Substitution = re, rr.GetSubstitution()
		}
	case *routev3.RouteAction_HashPolicy_Cookie_:
		h.Kind, h.Name = HashCookie, p.Cookie.GetName()
		if h.Name == "" {
			return HashPolicy{}, false, errors.New("cookie.name: empty")
		}
		// Envoy sets a cookie with a TTL when the request has none; a
		// proxyless client has no response to set it on.
		if p.Cookie.GetTtl() != nil || len(p.Cookie.GetAttributes()) > 0 {
			return HashPolicy{}, false, errors.New("cookie: a generated cookie (ttl, attributes) is not supported by meshlet's client; hash on a cookie the caller sends")
		}
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !p.ConnectionProperties.GetSourceIp() {
			return HashPolicy{}, false, nil
		}
		// In-process, the "source" is the caller itself: every request
		// would hash alike. Refused rather than silently constant.
		return HashPolicy{}, false, errors.New("connection_properties.source_ip: not supported by meshlet's client (a proxyless caller is its own source); hash on a header")
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		h.Kind, h.Name = HashQueryParameter, p.QueryParameter.GetName()
		if h.Name == "" {
			return HashPolicy{}, false, errors.New("query_parameter.name: empty")
		}
	case *routev3.RouteAction_HashPolicy_FilterState_:
		return HashPolicy{}, false, nil
	case nil:
		return HashPolicy{}, false, errors.New("sets no policy")
	default:
		return HashPolicy{}, false, fmt.Errorf("%s is not supported by meshlet", oneofName(hp, "policy_specifier"))
	}
	return h, true, nil
}
