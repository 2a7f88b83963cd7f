package resolver

import (
	"net/netip"
	"strconv"
)

// RBAC is the config of an RBAC HTTP filter (Envoy's
// envoy.config.rbac.v3.RBAC), converted as it is: a later evaluator applies
// Envoy's semantics to it. A request matches a policy when it matches any
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
