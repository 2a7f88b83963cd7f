package translate

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/internal/wire"
)

// Istio's default retry policy, used when a route sets no retries.
const (
	defaultRetryOn    = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
	defaultNumRetries = 2
	retryBaseInterval = envoydefaults.RetryBaseInterval
	retryMaxInterval  = envoydefaults.RetryMaxInterval
)

// clientListener is the Listener a client looks up by its target
// "host:port": an api_listener whose HttpConnectionManager fetches the
// RouteConfiguration of the same name over ADS.
func clientListener(name string) (*listenerv3.Listener, error) {
	router, err := routerFilter()
	if err != nil {
		return nil, err
	}
	fault, err := faultFilter()
	if err != nil {
		return nil, err
	}
	hcm, err := toAny(&hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: name,
		}},
		HttpFilters: []*hcmv3.HttpFilter{fault, router},
	})
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
	}, nil
}

// routerFilter is the terminal HTTP filter; gRPC-Go NACKs a filter chain
// that does not end with it.
func routerFilter() (*hcmv3.HttpFilter, error) {
	cfg, err := toAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: wellknown.Router, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: cfg}}, nil
}

// domains are the names a caller may use for host:port. gRPC matches the
// authority exactly, with its ":port", so every name comes with the port
// and without it. A cluster-local host also gets its short forms.
func domains(host string, port uint32) []string {
	ps := ":" + strconv.FormatUint(uint64(port), 10)
	out := []string{host + ps, host}
	if base, ok := strings.CutSuffix(host, "."+wire.DomainSuffix); ok {
		if name, ns, ok := strings.Cut(base, "."); ok && !strings.Contains(ns, ".") {
			for _, d := range []string{name, name + "." + ns, name + "." + ns + ".svc"} {
				out = append(out, d+ps, d)
			}
		}
	}
	return out
}

// buildRouteConfig makes the RouteConfiguration "host:port" of one service
// port: one virtual host whose routes come from the VirtualService, or a
// single default route when there is none or it has no route for the port.
func (t *translator) buildRouteConfig(s *service, port uint32, vs *model.VirtualService) (*routev3.RouteConfiguration, error) {
	name := listenerName(s.Host, port)
	var routes []*routev3.Route
	if vs != nil {
		var err error
		if routes, err = t.virtualServiceRoutes(s, port, vs); err != nil {
			return nil, err
		}
	}
	if len(routes) == 0 {
		// As Istio's default route: everything to the service, with the
		// default retry policy.
		action, err := t.routeAction(s.Host, port, []*networking.HTTPRouteDestination{{
			Destination: &networking.Destination{Host: s.Host},
		}}, nil, "")
		if err != nil {
			return nil, err
		}
		routes = []*routev3.Route{{
			Name:   "default",
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}}
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: domains(s.Host, port),
			Routes:  routes,
		}},
	}, nil
}

// virtualServiceRoutes makes one route per (http[i], match[j]) that applies
// to port, in order; an http entry without match gives one route for "/".
func (t *translator) virtualServiceRoutes(s *service, port uint32, vs *model.VirtualService) ([]*routev3.Route, error) {
	var out []*routev3.Route
	for i, http := range vs.Spec.GetHttp() {
		at := fmt.Sprintf("%s: spec.http[%d]", where(vs.Meta), i)
		matches := http.GetMatch()
		if len(matches) == 0 {
			matches = []*networking.HTTPMatchRequest{nil}
		}
		var action *routev3.RouteAction
		for j, m := range matches {
			if m.GetPort() != 0 && m.GetPort() != port {
				continue
			}
			if !appliesToMesh(m.GetGateways()) {
				continue
			}
			if grpcPort(s, port) && m.GetMethod() != nil {
				// Every gRPC request is a POST, and gRPC-Go cannot see the
				// :method pseudo-header, so decide the match here: drop a
				// method match that accepts POST, and the whole clause if
				// it cannot.
				if !stringMatches(m.GetMethod(), "POST") {
					continue
				}
				m = proto.Clone(m).(*networking.HTTPMatchRequest)
				m.Method = nil
			}
			if grpcPort(s, port) && len(m.GetQueryParams()) > 0 {
				// A gRPC request has no query string, so the clause can
				// never match. gRPC-Go, C-core and grpc-java skip such a
				// route, but grpc-js-xds ignores query_parameters and
				// would take the route for every request: skip it here,
				// so that every client does the same.
				continue
			}
			mat := at
			if m != nil {
				mat = fmt.Sprintf("%s.match[%d]", at, j)
			}
			match, err := routeMatch(m, mat)
			if err != nil {
				return nil, err
			}
			if action == nil {
				if action, err = t.routeAction(s.Host, port, http.GetRoute(), http, at); err != nil {
					return nil, err
				}
			}
			r := &routev3.Route{
				Name:   routeName(http.GetName(), m.GetName()),
				Match:  match,
				Action: &routev3.Route_Route{Route: proto.Clone(action).(*routev3.RouteAction)},
			}
			if r.TypedPerFilterConfig, err = routeFault(http.GetFault(), at); err != nil {
				return nil, err
			}
			out = append(out, r)
		}
	}
	return out, nil
}

func routeName(httpName, matchName string) string {
	switch {
	case httpName != "" && matchName != "":
		return httpName + "." + matchName
	case httpName != "":
		return httpName
	}
	return matchName
}

// routeMatch translates one Istio match clause; nil matches everything.
func routeMatch(m *networking.HTTPMatchRequest, at string) (*routev3.RouteMatch, error) {
	out := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return out, nil
	}
	if len(m.GetSourceLabels()) > 0 || m.GetSourceNamespace() != "" {
		return nil, fmt.Errorf("translate: %s: sourceLabels and sourceNamespace cannot be expressed in routes shared by every client", at)
	}
	switch u := m.GetUri().GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		out.PathSpecifier = &routev3.RouteMatch_Path{Path: u.Exact}
	case *networking.StringMatch_Prefix:
		if u.Prefix != "" {
			out.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.Prefix}
		}
	case *networking.StringMatch_Regex:
		if err := checkRegex(u.Regex, at+".uri.regex"); err != nil {
			return nil, err
		}
		out.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.Regex}}
	}
	if m.GetIgnoreUriCase() {
		out.CaseSensitive = wrapperspb.Bool(false)
	}

	type header struct {
		name   string
		match  *networking.StringMatch
		invert bool
		at     string
	}
	var headers []header
	for _, k := range sortedKeys(m.GetHeaders()) {
		headers = append(headers, header{k, m.GetHeaders()[k], false, at + ".headers[" + k + "]"})
	}
	for _, k := range sortedKeys(m.GetWithoutHeaders()) {
		headers = append(headers, header{k, m.GetWithoutHeaders()[k], true, at + ".withoutHeaders[" + k + "]"})
	}
	if m.GetMethod() != nil {
		headers = append(headers, header{":method", m.GetMethod(), false, at + ".method"})
	}
	if m.GetAuthority() != nil {
		headers = append(headers, header{":authority", m.GetAuthority(), false, at + ".authority"})
	}
	if m.GetScheme() != nil {
		headers = append(headers, header{":scheme", m.GetScheme(), false, at + ".scheme"})
	}
	for _, h := range headers {
		hm, err := headerMatcher(h.name, h.match, h.invert, h.at)
		if err != nil {
			return nil, err
		}
		out.Headers = append(out.Headers, hm)
	}

	for _, k := range sortedKeys(m.GetQueryParams()) {
		q := &routev3.QueryParameterMatcher{Name: k}
		sm, err := stringMatcher(m.GetQueryParams()[k], at+".queryParams["+k+"]")
		if err != nil {
			return nil, err
		}
		if sm == nil {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			q.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}
		}
		out.QueryParameters = append(out.QueryParameters, q)
	}
	return out, nil
}

// headerMatcher matches one header. An empty Istio match, or an empty
// prefix (which gRPC-Go NACKs in a StringMatcher), means "present".
//
// It uses HeaderMatcher's own exact_match, prefix_match, safe_regex_match
// and present_match, not string_match: gRPC clients learned string_match
// only with gRFC A63 (2023), and gRPC C-core 1.51 (Debian bookworm's
// Python, C++ and Ruby) NACKs the whole RouteConfiguration for it
// ("Invalid route header matcher specified"). The older fields mean the
// same and every gRPC client and Envoy accept them (docs/xds-compatibility.md).
func headerMatcher(name string, m *networking.StringMatch, invert bool, at string) (*routev3.HeaderMatcher, error) {
	sm, err := stringMatcher(m, at)
	if err != nil {
		return nil, err
	}
	return legacyHeaderMatcher(strings.ToLower(name), sm, invert), nil
}

// stringMatcher translates an Istio StringMatch; nil means "present".
func stringMatcher(m *networking.StringMatch, at string) (*matcherv3.StringMatcher, error) {
	switch v := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v.Exact}}, nil
	case *networking.StringMatch_Prefix:
		if v.Prefix == "" {
			return nil, nil
		}
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v.Prefix}}, nil
	case *networking.StringMatch_Regex:
		if err := checkRegex(v.Regex, at+".regex"); err != nil {
			return nil, err
		}
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: v.Regex},
		}}, nil
	}
	return nil, nil
}

// checkRegex refuses a regex that gRPC-Go (Go's RE2 syntax) cannot compile:
// it would NACK the whole RouteConfiguration.
func checkRegex(re, at string) error {
	if _, err := regexp.Compile("^(?:" + re + ")$"); err != nil {
		return fmt.Errorf("translate: %s: %w", at, err)
	}
	return nil
}

// routeAction sends a request to the route's destinations. http is nil for
// the default route; it carries the timeout and retries otherwise.
func (t *translator) routeAction(host string, port uint32, dests []*networking.HTTPRouteDestination, http *networking.HTTPRoute, at string) (*routev3.RouteAction, error) {
	if len(dests) == 0 {
		return nil, fmt.Errorf("translate: %s: only route destinations are supported (redirect, directResponse and delegate are not)", at)
	}
	type weighted struct {
		name   string
		weight uint32
	}
	var wcs []weighted
	add := func(d *networking.HTTPRouteDestination, w uint32) {
		name := t.destinationCluster(d.GetDestination(), host, port)
		for i := range wcs {
			if wcs[i].name == name {
				wcs[i].weight += w
				return
			}
		}
		wcs = append(wcs, weighted{name, w})
	}
	if len(dests) == 1 {
		add(dests[0], 1)
	} else {
		// As Istio: a destination of weight 0 gets no traffic. If every
		// weight is 0 (which validation should refuse), share equally
		// rather than send gRPC a total of 0, which it NACKs.
		for _, d := range dests {
			if d.GetWeight() > 0 {
				add(d, uint32(d.GetWeight()))
			}
		}
		if len(wcs) == 0 {
			for _, d := range dests {
				add(d, 1)
			}
		}
	}

	action := &routev3.RouteAction{}
	if len(wcs) == 1 {
		action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: wcs[0].name}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, c := range wcs {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
				Name:   c.name,
				Weight: wrapperspb.UInt32(c.weight),
			})
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	for _, c := range wcs {
		for _, hp := range t.hashes[c.name] {
			if !containsProto(action.HashPolicy, hp) {
				action.HashPolicy = append(action.HashPolicy, proto.Clone(hp).(*routev3.RouteAction_HashPolicy))
			}
		}
	}

	// No timeout means none, as in Istio: Envoy's unset route timeout would
	// be 15s, so 0 (disabled) is set explicitly. gRPC-Go reads
	// max_stream_duration, which is set only for a real timeout.
	action.Timeout = durationpb.New(0)
	if to := http.GetTimeout(); to != nil {
		action.Timeout = durationpb.New(to.AsDuration())
		action.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(to.AsDuration())}
	}
	action.RetryPolicy = retryPolicy(http.GetRetries())
	return action, nil
}

// destinationCluster names the cluster of one destination. Without an
// explicit port, a destination on the route's own host uses the route's
// port, one on another host that host's only port, and otherwise the
// route's port.
func (t *translator) destinationCluster(d *networking.Destination, host string, port uint32) string {
	dhost := d.GetHost()
	dport := d.GetPort().GetNumber()
	if dport == 0 {
		dport = port
		if s := t.byHost[dhost]; dhost != host && s != nil && len(s.Ports) == 1 {
			dport = s.Ports[0].Number
		}
	}
	return wire.ClusterName(dport, d.GetSubset(), dhost)
}

// retryPolicy translates Istio retries. No retries field means Istio's
// default (2 attempts); attempts 0 means no retry policy at all.
func retryPolicy(r *networking.HTTPRetry) *routev3.RetryPolicy {
	if r == nil {
		return &routev3.RetryPolicy{
			RetryOn:              defaultRetryOn,
			NumRetries:           wrapperspb.UInt32(defaultNumRetries),
			RetriableStatusCodes: []uint32{503},
			RetryBackOff:         retryBackOff(nil),
		}
	}
	if r.GetAttempts() <= 0 {
		return nil
	}
	rp := &routev3.RetryPolicy{
		NumRetries:   wrapperspb.UInt32(uint32(r.GetAttempts())),
		RetryBackOff: retryBackOff(r.GetBackoff()),
	}
	if r.GetRetryOn() == "" {
		rp.RetryOn = defaultRetryOn
		rp.RetriableStatusCodes = []uint32{503}
	} else {
		// The config package accepts only the conditions that gRPC-Go or
		// meshlet's HTTP client act on, so each one is passed on.
		var on []string
		for _, part := range strings.Split(r.GetRetryOn(), ",") {
			part = strings.ToLower(strings.TrimSpace(part))
			if code, err := strconv.ParseUint(part, 10, 32); err == nil {
				// An HTTP status code, as Istio allows.
				rp.RetriableStatusCodes = append(rp.RetriableStatusCodes, uint32(code))
				part = "retriable-status-codes"
			}
			if part != "" && !slices.Contains(on, part) {
				on = append(on, part)
			}
		}
		rp.RetryOn = strings.Join(on, ",")
	}
	if pt := r.GetPerTryTimeout(); pt != nil {
		rp.PerTryTimeout = durationpb.New(pt.AsDuration())
	}
	return rp
}

// retryBackOff is Envoy's default back-off (25ms, up to 10 times that),
// with Istio's backoff as the base interval when it is set.
func retryBackOff(base *durationpb.Duration) *routev3.RetryPolicy_RetryBackOff {
	b, m := retryBaseInterval, retryMaxInterval
	if d := base.AsDuration(); base != nil && d > 0 {
		b, m = d, 10*d
	}
	return &routev3.RetryPolicy_RetryBackOff{BaseInterval: durationpb.New(b), MaxInterval: durationpb.New(m)}
}

func containsProto[M proto.Message](list []M, m M) bool {
	for _, x := range list {
		if proto.Equal(x, m) {
			return true
		}
	}
	return false
}

// grpcPort reports whether a service port carries gRPC.
func grpcPort(s *service, port uint32) bool {
	p, ok := s.port(port)
	return ok && strings.EqualFold(p.Protocol, "GRPC")
}

// stringMatches evaluates an Istio StringMatch against v. The config was
// validated, so a regex compiles.
func stringMatches(m *networking.StringMatch, v string) bool {
	switch u := m.GetMatchType().(type) {
	case *networking.StringMatch_Exact:
		return u.Exact == v
	case *networking.StringMatch_Prefix:
		return strings.HasPrefix(v, u.Prefix)
	case *networking.StringMatch_Regex:
		re, err := regexp.Compile("^(?:" + u.Regex + ")$")
		return err == nil && re.MatchString(v)
	}
	return true
}
