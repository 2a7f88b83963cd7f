package translate

//lint:file-ignore SA1019 Envoy deprecated HeaderMatcher's own match fields for string_match, but they are the form every gRPC client accepts (docs/xds-compatibility.md).

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// legacyHeaderMatcher matches header name with sm, nil meaning "present",
// in HeaderMatcher's own fields (see headerMatcher). Only a contains
// matcher, which no Istio field makes, stays a string_match.
func legacyHeaderMatcher(name string, sm *matcherv3.StringMatcher, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: name, InvertMatch: invert}
	switch p := sm.GetMatchPattern().(type) {
	case nil:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	case *matcherv3.StringMatcher_Exact:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: p.Exact}
	case *matcherv3.StringMatcher_Prefix:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: p.Prefix}
	case *matcherv3.StringMatcher_Suffix:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_SuffixMatch{SuffixMatch: p.Suffix}
	case *matcherv3.StringMatcher_SafeRegex:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: p.SafeRegex}
	default:
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
	}
	return hm
}
