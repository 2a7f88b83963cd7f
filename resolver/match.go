package resolver

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strings"
)

// ErrNoRoute is wrapped by MatchRoute's error when no virtual host serves
// the authority or no route of it matches the request. An HTTP caller maps
// it to 404, or sends the request elsewhere.
var ErrNoRoute = errors.New("resolver: no route")

// MatchRoute finds the route of rc for a request, as Envoy does:
//
//   - the virtual host is the one with the best domain for authority (an
//     exact name first, then the longest "*suffix", then the longest
//     "prefix*"; case-insensitive), trying authority as given and then,
//     if it has a port and nothing matched, without the port; failing
//     that, the one with a "*" domain;
//   - the route is the first of that host whose match accepts the path (its
//     query string is matched by the query parameter matches), the headers
//     and the method.
//
// header returns a request header's values by lower-case name, nil if the
// request does not have it; it may be nil for a request without headers.
// The pseudo-headers ":method", ":authority" and ":path" come from method,
// authority and path. The route returned points into rc. MatchRoute is safe
// for concurrent use and does not block.
func MatchRoute(rc RouteConfig, authority, path string, header func(string) []string, method string) (*Route, error) {
	vh := matchVirtualHost(rc.VirtualHosts, authority)
	if vh == nil {
		return nil, fmt.Errorf("%w: routes %q have no virtual host for authority %q", ErrNoRoute, rc.Name, authority)
	}
	if path == "" {
		path = "/"
	}
	p, query, _ := strings.Cut(path, "?")
	p, _, _ = strings.Cut(p, "#")
	query, _, _ = strings.Cut(query, "#")
	hdr := func(name string) []string {
		switch name {
		case ":method":
			return []string{method}
		case ":authority":
			return []string{authority}
		case ":path":
			return []string{path}
		}
		if header == nil {
			return nil
		}
		return header(name)
	}
	var params url.Values
	for i := range vh.Routes {
		r := &vh.Routes[i]
		if len(r.Match.QueryParams) > 0 && params == nil {
			params = parseQuery(query)
		}
		if r.Match.matches(p, params, hdr) {
			return r, nil
		}
	}
	return nil, fmt.Errorf("%w for %s %s: routes %q, virtual host %q", ErrNoRoute, method, path, rc.Name, vh.Name)
}

// parseQuery parses what it can of a query string.
func parseQuery(q string) url.Values {
	v, _ := url.ParseQuery(q)
	if v == nil {
		v = url.Values{}
	}
	return v
}

func (m *RouteMatch) matches(path string, query url.Values, header func(string) []string) bool {
	switch m.Kind {
	case PathPrefix:
		if m.CaseInsensitive {
			if len(path) < len(m.Path) || !strings.EqualFold(path[:len(m.Path)], m.Path) {
				return false
			}
		} else if !strings.HasPrefix(path, m.Path) {
			return false
		}
	case PathExact:
		if m.CaseInsensitive {
			if !strings.EqualFold(path, m.Path) {
				return false
			}
		} else if path != m.Path {
			return false
		}
	case PathRegex:
		if m.Regex == nil || !m.Regex.MatchString(path) {
			return false
		}
	default:
		return false
	}
	for _, h := range m.Headers {
		if !h.Match(header(h.Name)) {
			return false
		}
	}
	for _, q := range m.QueryParams {
		vs, ok := query[q.Name]
		if !ok {
			return false
		}
		if !q.Present && (len(vs) == 0 || !q.String.Match(vs[0])) {
			return false
		}
	}
	if m.Fraction != nil && rand.Uint32N(1_000_000) >= *m.Fraction {
		return false
	}
	return true
}

// PickWeightedCluster returns the cluster of action a for a request: its
// Cluster, or one of its WeightedClusters chosen in proportion to the
// weights by rnd, which should be uniformly random (rand.Uint32()). It
// returns "" when a names no cluster.
func PickWeightedCluster(a RouteAction, rnd uint32) string {
	if a.Cluster != "" {
		return a.Cluster
	}
	var total uint64
	for _, wc := range a.WeightedClusters {
		total += uint64(wc.Weight)
	}
	if total == 0 {
		return ""
	}
	x := uint64(rnd) * total >> 32
	for _, wc := range a.WeightedClusters {
		if x < uint64(wc.Weight) {
			return wc.Name
		}
		x -= uint64(wc.Weight)
	}
	return a.WeightedClusters[len(a.WeightedClusters)-1].Name
}

// The kinds of domain pattern, best first (a higher value is better).
type domainMatch int

const (
	domainInvalid domainMatch = iota
	domainAny
	domainPrefix
	domainSuffix
	domainExact
)

func domainKind(d string) domainMatch {
	switch {
	case d == "":
		return domainInvalid
	case d == "*":
		return domainAny
	case strings.HasPrefix(d, "*"):
		if strings.Contains(d[1:], "*") {
			return domainInvalid
		}
		return domainSuffix
	case strings.HasSuffix(d, "*"):
		if strings.Contains(d[:len(d)-1], "*") {
			return domainInvalid
		}
		return domainPrefix
	case strings.Contains(d, "*"):
		return domainInvalid
	}
	return domainExact
}

// matchVirtualHost picks the virtual host for authority: the best domain
// other than "*" for authority as given, else for authority without its
// port, else a "*" domain.
func matchVirtualHost(vhs []VirtualHost, authority string) *VirtualHost {
	host := strings.ToLower(authority)
	if vh := bestVirtualHost(vhs, host, false); vh != nil {
		return vh
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		if vh := bestVirtualHost(vhs, h, false); vh != nil {
			return vh
		}
	}
	return bestVirtualHost(vhs, host, true)
}

func bestVirtualHost(vhs []VirtualHost, host string, universal bool) *VirtualHost {
	var best *VirtualHost
	bestKind, bestLen := domainInvalid, 0
	for i := range vhs {
		for _, d := range vhs[i].Domains {
			kind := domainKind(d)
			if (kind == domainAny) != universal {
				continue
			}
			if kind < bestKind || (kind == bestKind && len(d) <= bestLen) {
				continue
			}
			if !domainMatches(kind, strings.ToLower(d), host) {
				continue
			}
			best, bestKind, bestLen = &vhs[i], kind, len(d)
		}
	}
	return best
}

// domainMatches applies a pattern; as in Envoy, a wildcard stands for at
// least one character.
func domainMatches(kind domainMatch, d, host string) bool {
	switch kind {
	case domainAny:
		return true
	case domainExact:
		return d == host
	case domainSuffix:
		return len(host) > len(d)-1 && strings.HasSuffix(host, d[1:])
	case domainPrefix:
		return len(host) > len(d)-1 && strings.HasPrefix(host, d[:len(d)-1])
	}
	return false
}
