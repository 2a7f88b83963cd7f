package resolver

// This file and the other decode_*.go files validate xDS resources and
// convert them to the package's value types. A resource that meshlet
// cannot apply faithfully is refused with a reason (and so NACKed), never
// half-applied: a field that would change where a request goes or who may
// send it, and that meshlet does not implement, is an error.

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"regexp"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshlet/meshlet/resolver/internal/xdsclient"
)

var (
	listenerType = &xdsclient.ResourceType{
		URL: typeURL(&listenerv3.Listener{}), Short: "Listener", FullState: true, NameField: nameField(&listenerv3.Listener{}, "name"),
		Decode: decoder(func(m *listenerv3.Listener) string { return m.GetName() }, convertListener),
	}
	routeType = &xdsclient.ResourceType{
		URL: typeURL(&routev3.RouteConfiguration{}), Short: "RouteConfiguration", NameField: nameField(&routev3.RouteConfiguration{}, "name"),
		Decode: decoder(func(m *routev3.RouteConfiguration) string { return m.GetName() }, convertRouteConfig),
	}
	clusterType = &xdsclient.ResourceType{
		URL: typeURL(&clusterv3.Cluster{}), Short: "Cluster", FullState: true, NameField: nameField(&clusterv3.Cluster{}, "name"),
		Decode: decoder(func(m *clusterv3.Cluster) string { return m.GetName() }, convertCluster),
	}
	// endpointsType decodes every ClusterLoadAssignment in full;
	// resourceTypes gives each client one that reuses what it can.
	endpointsType = &xdsclient.ResourceType{
		URL: typeURL(&endpointv3.ClusterLoadAssignment{}), Short: "ClusterLoadAssignment", NameField: nameField(&endpointv3.ClusterLoadAssignment{}, "cluster_name"),
		Decode: decoder(func(m *endpointv3.ClusterLoadAssignment) string { return m.GetClusterName() }, convertEndpoints),
	}
)

// resourceTypes returns the types, in the order requests are sent, for one
// client: its ClusterLoadAssignments are decoded by d, which reuses the
// endpoints of the last decode.
func resourceTypes(d *endpointsDecoder) []*xdsclient.ResourceType {
	eds := *endpointsType
	eds.Decode, eds.Forget = d.decode, d.forget
	return []*xdsclient.ResourceType{listenerType, routeType, clusterType, &eds}
}

// validator is what the protoc-gen-validate code of the Envoy protos
// gives every message: Envoy's own constraints on its config.
type validator interface{ Validate() error }

// decoder makes a Decode function for resources of type M: unmarshal,
// convert, then check Envoy's own constraints.
func decoder[M interface {
	proto.Message
	validator
}, V any](name func(M) string, convert func(M) (V, error)) func(*anypb.Any) (string, any, error) {
	return func(a *anypb.Any) (string, any, error) {
		var m M
		m = m.ProtoReflect().Type().New().Interface().(M)
		if err := proto.Unmarshal(a.GetValue(), m); err != nil {
			return "", nil, fmt.Errorf("cannot unmarshal: %w", err)
		}
		n := name(m)
		if n == "" {
			return "", nil, errors.New("resource has no name")
		}
		v, err := convert(m)
		if err != nil {
			return n, nil, err
		}
		if err := checkEnvoy(m); err != nil {
			return n, nil, err
		}
		return n, v, nil
	}
}

// nameField is the number of m's name field, from its descriptor (1 in
// all four resource types), or 0, so that every resource is decoded, if
// it is not a single string.
func nameField(m proto.Message, name protoreflect.Name) protowire.Number {
	f := m.ProtoReflect().Descriptor().Fields().ByName(name)
	if f == nil || f.Kind() != protoreflect.StringKind || f.Cardinality() == protoreflect.Repeated {
		return 0
	}
	return f.Number()
}

func typeURL(m proto.Message) string {
	return "type.googleapis.com/" + string(m.ProtoReflect().Descriptor().FullName())
}

// messageName is the protobuf name a type URL names: what follows its last
// "/".
func messageName(url string) string {
	return url[strings.LastIndex(url, "/")+1:]
}

func fullName(m proto.Message) string { return string(m.ProtoReflect().Descriptor().FullName()) }

// unpack unmarshals a into m, which must be the type a names. The caller
// checks Envoy's constraints (checkEnvoy) after its own, more precise,
// checks.
func unpack(a *anypb.Any, m proto.Message) error {
	if a == nil {
		return fmt.Errorf("missing (want a %s)", fullName(m))
	}
	if got := messageName(a.GetTypeUrl()); got != fullName(m) {
		return fmt.Errorf("type %q, want %s", got, fullName(m))
	}
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return fmt.Errorf("cannot unmarshal %s: %w", fullName(m), err)
	}
	return nil
}

// unpackValid is unpack, then checkEnvoy.
func unpackValid(a *anypb.Any, m interface {
	proto.Message
	validator
}) error {
	if err := unpack(a, m); err != nil {
		return err
	}
	return checkEnvoy(m)
}

// checkEnvoy checks Envoy's own constraints on m.
func checkEnvoy(m validator) error {
	if err := m.Validate(); err != nil {
		return fmt.Errorf("violates Envoy's constraints: %w", err)
	}
	return nil
}

// compileRegex compiles an Envoy safe_regex (RE2 syntax, which Go's regexp
// implements) to match whole strings, as Envoy and gRPC-Go apply it.
func compileRegex(re string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(re); err != nil {
		return nil, fmt.Errorf("bad regex %q: %w", re, err)
	}
	return regexp.Compile("^(?:" + re + ")$")
}

// convertStringMatcher converts Envoy's StringMatcher. As gRPC-Go, it
// refuses an empty prefix, suffix or contains.
func convertStringMatcher(m *matcherv3.StringMatcher) (StringMatch, error) {
	if m == nil {
		return StringMatch{}, errors.New("missing string matcher")
	}
	out := StringMatch{IgnoreCase: m.GetIgnoreCase()}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		out.Kind, out.Value = StringExact, p.Exact
	case *matcherv3.StringMatcher_Prefix:
		out.Kind, out.Value = StringPrefix, p.Prefix
	case *matcherv3.StringMatcher_Suffix:
		out.Kind, out.Value = StringSuffix, p.Suffix
	case *matcherv3.StringMatcher_Contains:
		out.Kind, out.Value = StringContains, p.Contains
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return StringMatch{}, fmt.Errorf("safe_regex: %w", err)
		}
		out.Kind, out.Value, out.Regex, out.IgnoreCase = StringRegex, p.SafeRegex.GetRegex(), re, false
	case nil:
		return StringMatch{}, errors.New("string matcher sets no pattern")
	default:
		return StringMatch{}, fmt.Errorf("string matcher %T is not supported by meshlet (use exact, prefix, suffix, contains or safe_regex)", p)
	}
	if out.Kind != StringExact && out.Kind != StringRegex && out.Value == "" {
		return StringMatch{}, fmt.Errorf("empty %s match", out.Kind)
	}
	return out, nil
}

// convertHeaderMatcher converts Envoy's HeaderMatcher.
func convertHeaderMatcher(h *routev3.HeaderMatcher) (HeaderMatch, error) {
	if h == nil {
		return HeaderMatch{}, errors.New("missing header matcher")
	}
	if h.GetName() == "" {
		return HeaderMatch{}, errors.New("header matcher without a name")
	}
	out := HeaderMatch{Name: strings.ToLower(h.GetName()), Invert: h.GetInvertMatch()}
	at := fmt.Sprintf("header %q", h.GetName())
	if h.GetTreatMissingHeaderAsEmpty() {
		return HeaderMatch{}, fmt.Errorf("%s: treat_missing_header_as_empty is not supported by meshlet", at)
	}
	var err error
	str := func(kind StringMatchKind, v string) {
		out.Kind, out.String = HeaderString, StringMatch{Kind: kind, Value: v}
		if v == "" && kind != StringExact {
			err = fmt.Errorf("%s: empty %s match", at, kind)
		}
	}
	switch s := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_ExactMatch:
		str(StringExact, s.ExactMatch)
	case *routev3.HeaderMatcher_PrefixMatch:
		str(StringPrefix, s.PrefixMatch)
	case *routev3.HeaderMatcher_SuffixMatch:
		str(StringSuffix, s.SuffixMatch)
	case *routev3.HeaderMatcher_ContainsMatch:
		str(StringContains, s.ContainsMatch)
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, rerr := compileRegex(s.SafeRegexMatch.GetRegex())
		if rerr != nil {
			return HeaderMatch{}, fmt.Errorf("%s: safe_regex_match: %w", at, rerr)
		}
		out.Kind, out.String = HeaderString, StringMatch{Kind: StringRegex, Value: s.SafeRegexMatch.GetRegex(), Regex: re}
	case *routev3.HeaderMatcher_RangeMatch:
		out.Kind, out.RangeStart, out.RangeEnd = HeaderRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
		if out.RangeStart > out.RangeEnd {
			return HeaderMatch{}, fmt.Errorf("%s: range_match start %d is after end %d", at, out.RangeStart, out.RangeEnd)
		}
	case *routev3.HeaderMatcher_PresentMatch:
		out.Kind, out.Present = HeaderPresent, s.PresentMatch
	case *routev3.HeaderMatcher_StringMatch:
		sm, serr := convertStringMatcher(s.StringMatch)
		if serr != nil {
			return HeaderMatch{}, fmt.Errorf("%s: string_match: %w", at, serr)
		}
		out.Kind, out.String = HeaderString, sm
	case nil:
		return HeaderMatch{}, fmt.Errorf("%s: sets no match", at)
	default:
		return HeaderMatch{}, fmt.Errorf("%s: %T is not supported by meshlet", at, s)
	}
	return out, err
}

// convertCIDR converts a CidrRange; an unset prefix length is 0, as in
// Envoy.
func convertCIDR(c *corev3.CidrRange) (netip.Prefix, error) {
	if c == nil {
		return netip.Prefix{}, errors.New("missing CIDR range")
	}
	addr, err := netip.ParseAddr(c.GetAddressPrefix())
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("address_prefix %q is not an IP address", c.GetAddressPrefix())
	}
	bits := int(c.GetPrefixLen().GetValue())
	if c.GetPrefixLen().GetValue() > uint32(addr.BitLen()) {
		return netip.Prefix{}, fmt.Errorf("prefix_len %d is longer than %s's %d bits", c.GetPrefixLen().GetValue(), addr, addr.BitLen())
	}
	return netip.PrefixFrom(addr, bits).Masked(), nil
}

// duration converts a duration that must be valid and not negative; nil is
// zero.
func duration(d *durationpb.Duration, field string) (time.Duration, error) {
	if d == nil {
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, fmt.Errorf("%s: %w", field, err)
	}
	v := d.AsDuration()
	if v < 0 {
		return 0, fmt.Errorf("%s: negative duration %v", field, v)
	}
	return v, nil
}

// perMillion converts a FractionalPercent to parts per million, at most
// a million.
func perMillion(f *typev3.FractionalPercent) (uint32, error) {
	var factor uint64
	switch f.GetDenominator() {
	case typev3.FractionalPercent_HUNDRED:
		factor = 10_000
	case typev3.FractionalPercent_TEN_THOUSAND:
		factor = 100
	case typev3.FractionalPercent_MILLION:
		factor = 1
	default:
		return 0, fmt.Errorf("unknown denominator %v", f.GetDenominator())
	}
	return uint32(min(uint64(f.GetNumerator())*factor, 1_000_000)), nil
}

// addWeight adds w to *sum, refusing a total above MaxUint32.
func addWeight(sum *uint64, w uint32) error {
	*sum += uint64(w)
	if *sum > math.MaxUint32 {
		return errors.New("weights sum to more than 4294967295")
	}
	return nil
}
