package resolver

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/policy"
)

// The values below are meshlet's view of the xDS resources. The client
// shares one value between all watchers of a resource: treat every value,
// and the slices, maps and pointers in it, as read-only.

// Locality is where a workload or an endpoint runs.
type Locality = balancer.Locality

// Listener is an xDS Listener.
//
// A client Listener (an api_listener, named "host:port" by meshlet's
// control plane) has no address: it only says where its routes are. A
// server Listener (named after the address a server listens on) also has
// Address and Port, its TLS requirement and its HTTP filters.
type Listener struct {
	Name string
	// RouteConfigName is the RouteConfiguration to watch (RDS). It is empty
	// when the routes are Inline.
	RouteConfigName string
	// Inline holds the routes when the Listener carries them itself.
	Inline *RouteConfig

	// Address is the IP a server Listener is for; empty for a client
	// Listener.
	Address string
	// Port is the port a server Listener is for.
	Port uint32
	// TLS is set when the server's filter chain has a TLS transport
	// socket: the server must accept only TLS. Nil means plaintext, or
	// whatever the server's fallback credentials accept (meshlet's accept
	// both: PERMISSIVE).
	TLS *DownstreamTLS
	// HTTPFilters are the HTTP filters before the router, in order. The
	// terminal router filter, which every Listener must end with, is not
	// listed.
	HTTPFilters []HTTPFilter

	// NormalizePath, MergeSlashes and EscapedSlashes say how a server
	// rewrites a request's path before its filters and the application
	// see it (the HttpConnectionManager's normalize_path, merge_slashes
	// and path_with_escaped_slashes_action); unset, as in Envoy, the path
	// is left as it came. NormalizePath removes dot segments (RFC 3986),
	// decodes percent-encoded unreserved characters and turns backslashes
	// into slashes; MergeSlashes then merges runs of slashes. Client
	// Listeners leave them unset.
	NormalizePath  bool
	MergeSlashes   bool
	EscapedSlashes EscapedSlashesAction
}

// EscapedSlashesAction is what a server does with a request path that
// holds an escaped slash or backslash (%2F, %5C, in either case).
type EscapedSlashesAction int

// The actions on escaped slashes (Envoy's path_with_escaped_slashes_action).
const (
	// KeepEscapedSlashes leaves them escaped (Envoy's default).
	KeepEscapedSlashes EscapedSlashesAction = iota
	// RejectEscapedSlashes refuses the request with 400.
	RejectEscapedSlashes
	// RedirectEscapedSlashes unescapes them and redirects the client to
	// the resulting path.
	RedirectEscapedSlashes
	// UnescapeEscapedSlashes unescapes them and serves the request.
	UnescapeEscapedSlashes
)

// String returns Envoy's name of the action: "KEEP_UNCHANGED", ...
func (a EscapedSlashesAction) String() string {
	switch a {
	case KeepEscapedSlashes:
		return "KEEP_UNCHANGED"
	case RejectEscapedSlashes:
		return "REJECT_REQUEST"
	case RedirectEscapedSlashes:
		return "UNESCAPE_AND_REDIRECT"
	case UnescapeEscapedSlashes:
		return "UNESCAPE_AND_FORWARD"
	}
	return "EscapedSlashesAction(" + strconv.Itoa(int(a)) + ")"
}

// DownstreamTLS is a server's TLS requirement (a DownstreamTlsContext).
type DownstreamTLS struct {
	// RequireClientCert is set when clients must present a certificate
	// (mTLS, Istio's STRICT).
	RequireClientCert bool
}

// HTTPFilter is one HTTP filter of a Listener.
type HTTPFilter struct {
	// Name is the filter's instance name, such as
	// "envoy.filters.http.rbac.deny".
	Name string
	// Type is the full protobuf name of the filter's config, such as
	// "envoy.extensions.filters.http.rbac.v3.RBAC".
	Type string
	// RBAC is the config of an RBAC filter. It is nil for an RBAC filter
	// without rules, which lets every request through, and for filters of
	// other types.
	RBAC *RBAC
	// RateLimit is the config of a local_ratelimit filter; nil for one
	// enabled for no request, and for filters of other types.
	RateLimit *RateLimit
}

// RouteConfig is an xDS RouteConfiguration.
type RouteConfig struct {
	Name         string
	VirtualHosts []VirtualHost
}

// VirtualHost is a set of routes for some authorities.
type VirtualHost struct {
	Name string
	// Domains are the authorities this host serves: exact names, "*" for
	// any, and "*suffix" or "prefix*" wildcards. MatchRoute picks the host
	// as Envoy does.
	Domains []string
	// Routes are tried in order; the first that matches wins.
	Routes []Route
}

// Route is one route of a virtual host.
type Route struct {
	Name  string
	Match RouteMatch
	// Action says where a matching request goes. It is the zero value
	// when NonForwarding is set.
	Action RouteAction
	// NonForwarding is set for a server route: the request is handled by
	// the server itself.
	NonForwarding bool
	// Fault is the fault to inject into the route's requests (its
	// envoy.filters.http.fault config), or nil.
	Fault *policy.Fault
}

// PathMatchKind says how RouteMatch.Path is compared with a request path.
type PathMatchKind int

// The kinds of path match. The zero value is a prefix match, so the zero
// RouteMatch matches every request.
const (
	PathPrefix PathMatchKind = iota // the path starts with Path
	PathExact                       // the path is Path
	PathRegex                       // the whole path matches Regex
)

// String returns "prefix", "exact" or "regex".
func (k PathMatchKind) String() string {
	switch k {
	case PathPrefix:
		return "prefix"
	case PathExact:
		return "exact"
	case PathRegex:
		return "regex"
	}
	return "PathMatchKind(" + strconv.Itoa(int(k)) + ")"
}

// RouteMatch is what a request must match for a route to apply. Every
// part must match.
type RouteMatch struct {
	Kind PathMatchKind
	// Path is the prefix or exact path, or the source of Regex. A request
	// path is compared without its query string.
	Path string
	// Regex is set for PathRegex. It matches the whole path.
	Regex *regexp.Regexp
	// CaseInsensitive makes prefix and exact path matches ignore case.
	CaseInsensitive bool
	// Headers must all match. The request's method, authority and path
	// are the headers ":method", ":authority" and ":path".
	Headers []HeaderMatch
	// QueryParams must all match the request's query string.
	QueryParams []QueryParamMatch
	// Fraction, when set, is the share of matching requests, per million,
	// that the route takes (runtime_fraction).
	Fraction *uint32
}

// RouteAction sends a request to a cluster.
type RouteAction struct {
	// Cluster is the cluster to use. It is empty when WeightedClusters is
	// set.
	Cluster string
	// WeightedClusters split requests by weight; PickWeightedCluster
	// chooses one. Entries of weight 0 are left out.
	WeightedClusters []WeightedCluster
	// Timeout bounds the whole request, retries included. Zero means no
	// timeout. It is the smaller of the route's timeout and
	// max_stream_duration, where set and not zero. (Envoy's default of
	// 15s for an unset timeout is not applied, as gRPC-Go does not.)
	Timeout time.Duration
	// Retry is the route's retry policy, or the virtual host's when the
	// route has none; nil means no retries.
	Retry *RetryPolicy
	// HashPolicies make the request's hash for ring-hash clusters, in
	// order.
	HashPolicies []HashPolicy
}

// WeightedCluster is one cluster of a split.
type WeightedCluster struct {
	Name   string
	Weight uint32
}

// RetryPolicy is a route's retry policy, with Envoy's defaults filled in.
type RetryPolicy struct {
	// NumRetries is the number of retries after the first attempt (Envoy's
	// default 1 when unset).
	NumRetries uint32
	// RetryOn are the retry conditions, lower-cased, such as "5xx",
	// "connect-failure", "retriable-status-codes" or a gRPC status name
	// like "unavailable".
	RetryOn []string
	// RetriableStatusCodes are the HTTP status codes that
	// "retriable-status-codes" retries.
	RetriableStatusCodes []uint32
	// PerTryTimeout bounds each attempt; zero means the route's Timeout.
	PerTryTimeout time.Duration
	// BackoffBase and BackoffMax bound the exponential backoff between
	// attempts (Envoy's defaults: 25ms, and 10 times the base).
	BackoffBase, BackoffMax time.Duration
}

// HashPolicyKind says what a hash policy hashes.
type HashPolicyKind int

// The kinds of hash policy.
const (
	HashHeader         HashPolicyKind = iota // a request header, Name
	HashCookie                               // a cookie the caller sends, Name
	HashQueryParameter                       // a query parameter, Name
)

// String returns "header", "cookie" or "query-parameter".
func (k HashPolicyKind) String() string {
	switch k {
	case HashHeader:
		return "header"
	case HashCookie:
		return "cookie"
	case HashQueryParameter:
		return "query-parameter"
	}
	return "HashPolicyKind(" + strconv.Itoa(int(k)) + ")"
}

// HashPolicy is one input of a request's hash, as Envoy combines them: the
// policies are evaluated in order, and a Terminal policy that produced a
// value ends the evaluation.
type HashPolicy struct {
	Kind HashPolicyKind
	// Name is the header (lower-cased), cookie or query parameter name.
	Name string
	// Regex and Substitution, when Regex is set, rewrite a header value
	// before it is hashed.
	Regex        *regexp.Regexp
	Substitution string
	Terminal     bool
}

// StringMatchKind says how a StringMatch compares.
type StringMatchKind int

// The kinds of string match.
const (
	StringExact    StringMatchKind = iota // equal to Value
	StringPrefix                          // starts with Value
	StringSuffix                          // ends with Value
	StringContains                        // contains Value
	StringRegex                           // wholly matches Regex
)

// String returns "exact", "prefix", "suffix", "contains" or "regex".
func (k StringMatchKind) String() string {
	switch k {
	case StringExact:
		return "exact"
	case StringPrefix:
		return "prefix"
	case StringSuffix:
		return "suffix"
	case StringContains:
		return "contains"
	case StringRegex:
		return "regex"
	}
	return "StringMatchKind(" + strconv.Itoa(int(k)) + ")"
}

// StringMatch matches a string (Envoy's StringMatcher).
type StringMatch struct {
	Kind StringMatchKind
	// Value is the string compared with, or the source of Regex.
	Value string
	// Regex is set for StringRegex; it must match the whole string.
	Regex *regexp.Regexp
	// IgnoreCase makes the non-regex kinds ignore case.
	IgnoreCase bool
}

// Match reports whether s matches.
func (m StringMatch) Match(s string) bool {
	v := m.Value
	if m.IgnoreCase && m.Kind != StringRegex {
		s, v = strings.ToLower(s), strings.ToLower(v)
	}
	switch m.Kind {
	case StringExact:
		return s == v
	case StringPrefix:
		return strings.HasPrefix(s, v)
	case StringSuffix:
		return strings.HasSuffix(s, v)
	case StringContains:
		return strings.Contains(s, v)
	case StringRegex:
		return m.Regex != nil && m.Regex.MatchString(s)
	}
	return false
}

// HeaderMatchKind says how a HeaderMatch tests a header.
type HeaderMatchKind int

// The kinds of header match.
const (
	HeaderString  HeaderMatchKind = iota // the value matches String
	HeaderPresent                        // the header is present (or, with Present false, absent)
	HeaderRange                          // the value is an integer in [RangeStart, RangeEnd)
)

// HeaderMatch matches one request header (Envoy's HeaderMatcher). A header
// sent several times is matched as its values joined with ",".
type HeaderMatch struct {
	// Name is lower-case.
	Name   string
	Kind   HeaderMatchKind
	String StringMatch
	// Present is, for HeaderPresent, whether the header must be present.
	Present bool
	// RangeStart and RangeEnd bound a HeaderRange match: start included,
	// end excluded.
	RangeStart, RangeEnd int64
	// Invert inverts the result for a header that is present. As in
	// gRPC-Go, a header that is absent fails every match except a
	// HeaderPresent one, inverted or not, so that the same config routes
	// alike over gRPC and HTTP.
	Invert bool
}

// Match reports whether a request matches. values are the header's values,
// nil if the request does not have it.
func (m HeaderMatch) Match(values []string) bool {
	present := len(values) > 0
	if m.Kind == HeaderPresent {
		return present == (m.Present != m.Invert)
	}
	if !present {
		return false
	}
	v := strings.Join(values, ",")
	var ok bool
	switch m.Kind {
	case HeaderString:
		ok = m.String.Match(v)
	case HeaderRange:
		n, err := strconv.ParseInt(v, 10, 64)
		ok = err == nil && n >= m.RangeStart && n < m.RangeEnd
	}
	return ok != m.Invert
}

// QueryParamMatch matches one query parameter.
type QueryParamMatch struct {
	Name string
	// Present, when set, only requires the parameter to be there;
	// otherwise its first value must match String.
	Present bool
	String  StringMatch
}

// LBPolicy is a cluster's load-balancing policy.
type LBPolicy int

// The load-balancing policies.
const (
	// WeightedRoundRobin is Envoy's ROUND_ROBIN, which follows endpoint
	// weights (balancer.WeightedRoundRobin; gRPC-Go's round_robin, and
	// balancer.RoundRobin, ignore them).
	WeightedRoundRobin LBPolicy = iota
	LeastRequest                // power of two choices, fewest outstanding requests
	RingHash                    // consistent hashing on the route's hash policies
	Random                      // uniformly random
	PeakEWMA                    // latency-aware: power of two choices on peak-EWMA latency × load (meshlet's extension)
)

// String returns Envoy's name of the policy: "ROUND_ROBIN", ...; for
// PeakEWMA, which Envoy lacks, the value of meshlet's DestinationRule
// annotation, "PEAK_EWMA".
func (p LBPolicy) String() string {
	switch p {
	case WeightedRoundRobin:
		return "ROUND_ROBIN"
	case LeastRequest:
		return "LEAST_REQUEST"
	case RingHash:
		return "RING_HASH"
	case Random:
		return "RANDOM"
	case PeakEWMA:
		return "PEAK_EWMA"
	}
	return "LBPolicy(" + strconv.Itoa(int(p)) + ")"
}

// Cluster is an xDS Cluster. meshlet supports EDS clusters fed over ADS.
type Cluster struct {
	Name string
	// EDSServiceName is the ClusterLoadAssignment to watch for this
	// cluster's endpoints: eds_cluster_config.service_name, or the
	// cluster's name when that is empty.
	EDSServiceName string
	LBPolicy       LBPolicy
	// RingHash holds the ring sizes of a RingHash cluster.
	RingHash RingHashConfig
	// TLS is set when endpoints are reached over mTLS.
	TLS *UpstreamTLS
	// OutlierDetection is set when the cluster ejects failing endpoints.
	OutlierDetection *OutlierDetection
	// Limits are the circuit_breakers thresholds, nil when there are
	// none (see convertCircuitBreaking).
	Limits *policy.Limits
	// Breaker is meshlet's per-destination breaker, from the Cluster's
	// metadata; nil for none.
	Breaker *policy.BreakerSettings
	// Connections is how long a connection to the cluster lives, from
	// its HttpProtocolOptions; the zero value for the clients' defaults.
	Connections policy.ConnLifetime
}

// RingHashConfig bounds a hash ring (Envoy's defaults 1024 and 8M).
type RingHashConfig struct {
	MinRingSize, MaxRingSize uint64
}

// UpstreamTLS is how a cluster's endpoints are reached over TLS (an
// UpstreamTlsContext). The caller presents its own workload certificate
// and verifies the endpoint against the mesh roots.
type UpstreamTLS struct {
	// SANs are the identities (URI or DNS SANs, such as SPIFFE IDs) an
	// endpoint may prove: the exact match_subject_alt_names.
	SANs []string
	// SANMatchers are the other match_subject_alt_names (prefix, suffix,
	// regex...). A peer is accepted if any of SANs or SANMatchers matches
	// one of its SANs; if both are empty, any peer the roots verify.
	SANMatchers []StringMatch
	// SNI is the server name to send, if any.
	SNI string
}

// OutlierDetection is a cluster's outlier detection, with Envoy's defaults
// filled in for unset fields. Percentages are 0-100; StdevFactor is in
// thousandths (1900 means 1.9).
type OutlierDetection struct {
	Interval                           time.Duration // 10s
	BaseEjectionTime                   time.Duration // 30s
	MaxEjectionTime                    time.Duration // 300s, or BaseEjectionTime if larger
	MaxEjectionPercent                 uint32        // 10
	Consecutive5xx                     uint32        // 5
	EnforcingConsecutive5xx            uint32        // 100
	ConsecutiveGatewayFailure          uint32        // 5
	EnforcingConsecutiveGatewayFailure uint32        // 0
	SuccessRateMinimumHosts            uint32        // 5
	SuccessRateRequestVolume           uint32        // 100
	SuccessRateStdevFactor             uint32        // 1900
	EnforcingSuccessRate               uint32        // 100
	FailurePercentageThreshold         uint32        // 85
	FailurePercentageMinimumHosts      uint32        // 5
	FailurePercentageRequestVolume     uint32        // 50
	EnforcingFailurePercentage         uint32        // 0
	// SplitExternalLocalOriginErrors counts failures seen on the caller's
	// side (connect failures, resets, timeouts) apart from responses,
	// against ConsecutiveLocalOriginFailure.
	SplitExternalLocalOriginErrors         bool   // false
	ConsecutiveLocalOriginFailure          uint32 // 5
	EnforcingConsecutiveLocalOriginFailure uint32 // 100
}

// Endpoints is an xDS ClusterLoadAssignment: the endpoints of a cluster,
// by locality.
type Endpoints struct {
	ClusterName string
	// Localities hold the endpoints. Localities of load-balancing weight 0
	// are left out, as gRPC-Go leaves them out.
	Localities []LocalityEndpoints
}

// LocalityEndpoints are the endpoints of one locality at one priority.
type LocalityEndpoints struct {
	Locality Locality
	// Weight is the locality's load-balancing weight (at least 1).
	Weight uint32
	// Priority is 0 for the most preferred localities; the priorities of
	// a ClusterLoadAssignment have no gaps.
	Priority  uint32
	Endpoints []Endpoint
}

// HealthStatus is an endpoint's health as the control plane reports it.
type HealthStatus int

// The health statuses (Envoy's).
const (
	HealthUnknown HealthStatus = iota
	HealthHealthy
	HealthUnhealthy
	HealthDraining
	HealthTimeout
	HealthDegraded
)

// String returns Envoy's name of the status: "HEALTHY", ...
func (h HealthStatus) String() string {
	switch h {
	case HealthUnknown:
		return "UNKNOWN"
	case HealthHealthy:
		return "HEALTHY"
	case HealthUnhealthy:
		return "UNHEALTHY"
	case HealthDraining:
		return "DRAINING"
	case HealthTimeout:
		return "TIMEOUT"
	case HealthDegraded:
		return "DEGRADED"
	}
	return "HealthStatus(" + strconv.Itoa(int(h)) + ")"
}

// Endpoint is one address of a cluster.
type Endpoint struct {
	// Address is "ip:port" ("[ip]:port" for IPv6), or "host:port" for an
	// endpoint the control plane gives by DNS name.
	Address string
	// Weight is the endpoint's load-balancing weight (at least 1).
	Weight uint32
	Health HealthStatus
	// Healthy is set when the endpoint may be used: its health is HEALTHY
	// or UNKNOWN, as gRPC-Go decides.
	Healthy bool
	// Hostname is the endpoint's hostname, if the control plane sent one.
	Hostname string
}

// String returns the matcher as "<kind> <value>", for errors and logs.
func (m StringMatch) String() string { return m.Kind.String() + " " + m.Value }
