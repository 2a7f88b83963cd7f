package resolver

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// RBAC is the config of an RBAC HTTP filter (Envoy's
// envoy.config.rbac.v3.RBAC), converted as it is; Authorize applies
// Envoy's semantics to it, for any transport. A request matches a policy when it matches any
// of the policy's permissions and any of its principals.
//
// With Action RBACAllow, a request is allowed only if it matches some
// policy; with RBACDeny, a request that matches some policy is refused;
// RBACLog allows every request.
type RBAC struct {
	Action RBACAction
	// Policies are sorted by name.
	Policies []RBACPolicy
}

// RBACAction is what an RBAC filter does with the requests its policies
// match.
type RBACAction int

// The RBAC actions.
const (
	RBACAllow RBACAction = iota
	RBACDeny
	RBACLog
)

// String returns "ALLOW", "DENY" or "LOG".
func (a RBACAction) String() string {
	switch a {
	case RBACAllow:
		return "ALLOW"
	case RBACDeny:
		return "DENY"
	case RBACLog:
		return "LOG"
	}
	return "RBACAction(" + strconv.Itoa(int(a)) + ")"
}

// RBACPolicy is one named policy.
type RBACPolicy struct {
	Name        string
	Permissions []Permission // ORed: what the request does
	Principals  []Principal  // ORed: who sends it
}

// PermissionKind says what a Permission tests.
type PermissionKind int

// The kinds of permission.
const (
	PermissionAny                  PermissionKind = iota // every request
	PermissionAnd                                        // all of Rules
	PermissionOr                                         // any of Rules
	PermissionNot                                        // not Rules[0]
	PermissionHeader                                     // Header matches
	PermissionURLPath                                    // the path, without query, matches String
	PermissionDestinationIP                              // the local address is in CIDR
	PermissionDestinationPort                            // the local port is Port
	PermissionDestinationPortRange                       // the local port is in [Port, PortEnd)
	PermissionRequestedServerName                        // the TLS SNI matches String
)

// String returns the name of the envoy field: "any", "and_rules", ...
func (k PermissionKind) String() string {
	switch k {
	case PermissionAny:
		return "any"
	case PermissionAnd:
		return "and_rules"
	case PermissionOr:
		return "or_rules"
	case PermissionNot:
		return "not_rule"
	case PermissionHeader:
		return "header"
	case PermissionURLPath:
		return "url_path"
	case PermissionDestinationIP:
		return "destination_ip"
	case PermissionDestinationPort:
		return "destination_port"
	case PermissionDestinationPortRange:
		return "destination_port_range"
	case PermissionRequestedServerName:
		return "requested_server_name"
	}
	return "PermissionKind(" + strconv.Itoa(int(k)) + ")"
}

// Permission is a tree of conditions on a request (Envoy's
// rbac.v3.Permission). Only the fields of its Kind are set.
type Permission struct {
	Kind   PermissionKind
	Rules  []Permission // And, Or; Not has exactly one
	Header HeaderMatch
	String StringMatch
	CIDR   netip.Prefix
	// Port, and PortEnd (excluded) for a range.
	Port, PortEnd uint32
}

// PrincipalKind says what a Principal tests.
type PrincipalKind int

// The kinds of principal.
const (
	PrincipalAny            PrincipalKind = iota // every caller
	PrincipalAnd                                 // all of IDs
	PrincipalOr                                  // any of IDs
	PrincipalNot                                 // not IDs[0]
	PrincipalAuthenticated                       // a TLS peer whose certificate name matches Name (any if nil)
	PrincipalSourceIP                            // the connection's peer address is in CIDR (source_ip)
	PrincipalDirectRemoteIP                      // the connection's peer address is in CIDR
	PrincipalRemoteIP                            // the original client address (after proxies) is in CIDR
	PrincipalHeader                              // Header matches
	PrincipalURLPath                             // the path, without query, matches String
)

// String returns the name of the envoy field: "any", "and_ids", ...
func (k PrincipalKind) String() string {
	switch k {
	case PrincipalAny:
		return "any"
	case PrincipalAnd:
		return "and_ids"
	case PrincipalOr:
		return "or_ids"
	case PrincipalNot:
		return "not_id"
	case PrincipalAuthenticated:
		return "authenticated"
	case PrincipalSourceIP:
		return "source_ip"
	case PrincipalDirectRemoteIP:
		return "direct_remote_ip"
	case PrincipalRemoteIP:
		return "remote_ip"
	case PrincipalHeader:
		return "header"
	case PrincipalURLPath:
		return "url_path"
	}
	return "PrincipalKind(" + strconv.Itoa(int(k)) + ")"
}

// Principal is a tree of conditions on the caller (Envoy's
// rbac.v3.Principal). Only the fields of its Kind are set.
type Principal struct {
	Kind PrincipalKind
	IDs  []Principal // And, Or; Not has exactly one
	// Name matches, for PrincipalAuthenticated, the peer certificate's
	// URI SAN, else DNS SAN, else subject; nil accepts any peer that
	// presented a verified certificate.
	Name   *StringMatch
	Header HeaderMatch
	String StringMatch // PrincipalURLPath
	CIDR   netip.Prefix
}

// AuthzRequest is what an authorization decision looks at, for any
// transport.
type AuthzRequest struct {
	// Peer is the caller's verified leaf certificate; nil for a plaintext
	// caller.
	Peer *x509.Certificate
	// Method, Path and Authority of the request. Path is without the
	// query and escaped as sent, as Envoy's RBAC filter sees it; a server
	// normalizes it first as its Listener says.
	Method, Path, Authority string
	// Header returns a request header's values, nil when absent. Names are
	// lower-case.
	Header func(name string) []string
	// Local is the server's address the request came in on; Remote is the
	// caller's.
	Local, Remote netip.AddrPort
	// ServerName is the TLS SNI, if any.
	ServerName string
}

// ErrDenied is wrapped by the error Authorize returns for a refused
// request.
var ErrDenied = errors.New("resolver: denied by policy")

// Denial is the error Authorize returns for a refused request: it says
// which filter and policy decided, so that each transport can say so in
// its own words. It wraps ErrDenied.
type Denial struct {
	// Filter is the name of the RBAC filter that refused the request.
	Filter string
	// Action is that filter's action: RBACDeny when Policy matched the
	// request, RBACAllow when none of its policies did.
	Action RBACAction
	// Policy is the deny policy that matched; empty for RBACAllow.
	Policy string
}

// Reason says why the request was refused, in gRPC-Go's words after
// "incoming RPC" (or Envoy's after "incoming request"): "did not match an
// allow policy", or "matched a deny policy" and its name.
func (d *Denial) Reason() string {
	if d.Action == RBACDeny {
		return fmt.Sprintf("matched a deny policy %q", d.Policy)
	}
	return "did not match an allow policy"
}

func (d *Denial) Error() string { return ErrDenied.Error() + ": incoming request " + d.Reason() }

// Unwrap returns ErrDenied.
func (d *Denial) Unwrap() error { return ErrDenied }

// Authorize applies a server Listener's RBAC filters to a request, in
// order, with Envoy's and gRPC-Go's semantics: a DENY filter refuses a
// request that matches one of its policies; an ALLOW filter refuses one
// that matches none. Filters of other types are ignored. The error is a
// *Denial, which says which policy decided and wraps ErrDenied.
func Authorize(filters []HTTPFilter, req AuthzRequest) error {
	for _, f := range filters {
		if f.RBAC == nil {
			continue
		}
		matched := ""
		for _, p := range f.RBAC.Policies {
			if anyPermission(p.Permissions, &req) && anyPrincipal(p.Principals, &req) {
				matched = p.Name
				break
			}
		}
		switch f.RBAC.Action {
		case RBACDeny:
			if matched != "" {
				return &Denial{Filter: f.Name, Action: RBACDeny, Policy: matched}
			}
		case RBACAllow:
			if matched == "" {
				return &Denial{Filter: f.Name, Action: RBACAllow}
			}
		}
	}
	return nil
}

func anyPermission(ps []Permission, req *AuthzRequest) bool {
	for _, p := range ps {
		if permission(p, req) {
			return true
		}
	}
	return false
}

func permission(p Permission, req *AuthzRequest) bool {
	switch p.Kind {
	case PermissionAny:
		return true
	case PermissionAnd:
		for _, r := range p.Rules {
			if !permission(r, req) {
				return false
			}
		}
		return true
	case PermissionOr:
		return anyPermission(p.Rules, req)
	case PermissionNot:
		return len(p.Rules) == 1 && !permission(p.Rules[0], req)
	case PermissionHeader:
		return p.Header.Match(header(req, p.Header.Name))
	case PermissionURLPath:
		return p.String.Match(req.Path)
	case PermissionDestinationIP:
		return req.Local.IsValid() && p.CIDR.Contains(req.Local.Addr())
	case PermissionDestinationPort:
		return uint32(req.Local.Port()) == p.Port
	case PermissionDestinationPortRange:
		port := uint32(req.Local.Port())
		return port >= p.Port && port < p.PortEnd
	case PermissionRequestedServerName:
		return p.String.Match(req.ServerName)
	}
	return false // a kind this evaluator does not know never matches
}

func anyPrincipal(ps []Principal, req *AuthzRequest) bool {
	for _, p := range ps {
		if principal(p, req) {
			return true
		}
	}
	return false
}

func principal(p Principal, req *AuthzRequest) bool {
	switch p.Kind {
	case PrincipalAny:
		return true
	case PrincipalAnd:
		for _, id := range p.IDs {
			if !principal(id, req) {
				return false
			}
		}
		return true
	case PrincipalOr:
		return anyPrincipal(p.IDs, req)
	case PrincipalNot:
		return len(p.IDs) == 1 && !principal(p.IDs[0], req)
	case PrincipalAuthenticated:
		if req.Peer == nil {
			return false
		}
		return p.Name == nil || p.Name.Match(certName(req.Peer))
	case PrincipalSourceIP, PrincipalDirectRemoteIP, PrincipalRemoteIP:
		return req.Remote.IsValid() && p.CIDR.Contains(req.Remote.Addr())
	case PrincipalHeader:
		return p.Header.Match(header(req, p.Header.Name))
	case PrincipalURLPath:
		return p.String.Match(req.Path)
	}
	return false
}

// certName is the name Envoy matches an authenticated principal against:
// the first URI SAN, else the first DNS SAN, else the subject.
func certName(c *x509.Certificate) string {
	if len(c.URIs) > 0 {
		return c.URIs[0].String()
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// header gives the pseudo-headers from the request's fields, as HTTP/2
// carries them.
func header(req *AuthzRequest, name string) []string {
	switch name {
	case ":method":
		return []string{req.Method}
	case ":path":
		return []string{req.Path}
	case ":authority", "host":
		return []string{req.Authority}
	}
	if req.Header == nil {
		return nil
	}
	return req.Header(name)
}
