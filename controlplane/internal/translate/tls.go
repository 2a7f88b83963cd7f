package translate

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/internal/wire"
)

// commonTLSContext names wire.CertProviderInstance for the workload's
// certificate and for the roots, in the fields gRPC-Go reads first (gRFC
// A29): tls_certificate_provider_instance and validation_context's
// ca_certificate_provider_instance. The older
// tls_certificate_certificate_provider_instance and
// combined_validation_context forms are read only when these are unset.
//
// sans, on the client side only (gRPC-Go NACKs them on a server), are the
// identities a server may prove; gRPC-Go accepts a peer whose certificate
// carries any of them, URI SANs included, and any peer the roots verify
// when the list is empty.
func commonTLSContext(sans []string) *tlsv3.CommonTlsContext {
	vc := &tlsv3.CertificateValidationContext{
		CaCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: wire.CertProviderInstance},
	}
	for _, san := range sans {
		vc.MatchSubjectAltNames = append(vc.MatchSubjectAltNames, &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san},
		})
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{InstanceName: wire.CertProviderInstance},
		ValidationContextType:          &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: vc},
	}
}

// transportSocket wraps a TLS context in the transport socket that gRPC-Go
// reads: its name must be envoy.transport_sockets.tls.
func transportSocket(ctx proto.Message) (*corev3.TransportSocket, error) {
	a, err := toAny(ctx)
	if err != nil {
		return nil, err
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: a},
	}, nil
}

// downstreamTLS is the transport socket of a STRICT server's filter chain:
// TLS that requires and verifies a client certificate. A chain without it
// leaves the connection to the server's fallback credentials, which for
// meshlet accept both plaintext and TLS (PERMISSIVE).
func downstreamTLS() (*corev3.TransportSocket, error) {
	return transportSocket(&tlsv3.DownstreamTlsContext{
		CommonTlsContext:         commonTLSContext(nil),
		RequireClientCertificate: wrapperspb.Bool(true),
	})
}

// upstreamTLS is the transport socket of a cluster whose endpoints are
// reached over mTLS, verified against sans.
func upstreamTLS(sans []string) (*corev3.TransportSocket, error) {
	return transportSocket(&tlsv3.UpstreamTlsContext{CommonTlsContext: commonTLSContext(sans)})
}

// clusterTLS says whether the cluster of one subset ("" for none) of a
// service port is reached over mTLS, and with which identities, as Istio
// decides it: the subset's tls.mode, else the top-level one; ISTIO_MUTUAL
// means mTLS and DISABLE plaintext. Without either ("auto mTLS"), mTLS is
// used when the cluster has endpoints and every one is a meshlet server
// (a registry instance) whose PeerAuthentication is not DISABLE: a
// WorkloadEntry or a static endpoint may not speak TLS.
func (t *translator) clusterTLS(s *service, port uint32, dr destRule, sub *networking.Subset) (*corev3.TransportSocket, error) {
	tls := sub.GetTrafficPolicy().GetTls()
	if tls == nil {
		tls = dr.top.GetTls()
	}
	var eps []endpointInfo
	for _, e := range s.endpoints[port] {
		if labelsMatch(sub.GetLabels(), e.labels) {
			eps = append(eps, e)
		}
	}
	switch {
	case tls != nil && tls.GetMode() == networking.ClientTLSSettings_ISTIO_MUTUAL:
	case tls != nil:
		return nil, nil // DISABLE; validation refuses SIMPLE and MUTUAL
	case len(eps) == 0:
		return nil, nil
	default:
		// One endpoint cannot turn the others' traffic to plaintext: mTLS
		// whenever a meshlet server that expects it is among them. A
		// meshlet server under DISABLE still accepts TLS. gRPC-Go cannot
		// choose TLS per endpoint (it NACKs transport_socket_matches), so
		// a static endpoint in the same cluster gets mTLS too, and that is
		// said loudly.
		var expects, static []string
		for _, e := range eps {
			switch {
			case !e.registered:
				static = append(static, net.JoinHostPort(e.address, strconv.FormatUint(uint64(e.port), 10)))
			case t.peerAuthMode(t.endpointWorkload(e), e.port) != modeDisable:
				expects = append(expects, e.address)
			}
		}
		if len(expects) == 0 {
			return nil, nil
		}
		if len(static) > 0 {
			t.warn(fmt.Sprintf("cluster %s mixes meshlet servers that expect mTLS with endpoints that may not speak it (%s): it uses mTLS for all of them; set the DestinationRule's tls.mode to decide",
				wire.ClusterName(port, sub.GetName(), s.Host), strings.Join(static, ", ")))
		}
	}
	sans := t.subjectAltNames(s, eps)
	if len(sans) == 0 {
		// A subset with no endpoints yet: the identities of the whole
		// service port, so that the list is not empty (which would accept
		// any identity of the trust domain).
		sans = t.subjectAltNames(s, s.endpoints[port])
	}
	return upstreamTLS(sans)
}

// subjectAltNames are the identities the endpoints eps of s may prove:
// the ServiceEntry's subjectAltNames when it sets them, otherwise the SPIFFE
// ID of every distinct service account of the endpoints ("default" when
// an endpoint names none). Sorted.
func (t *translator) subjectAltNames(s *service, eps []endpointInfo) []string {
	seen := map[string]bool{}
	var out []string
	add := func(san string) {
		if !seen[san] {
			seen[san] = true
			out = append(out, san)
		}
	}
	if len(s.sans) > 0 {
		for _, san := range s.sans {
			add(san)
		}
	} else {
		for _, e := range eps {
			w := Workload{Namespace: e.namespace, ServiceAccount: e.serviceAccount}
			if e.registered {
				w = t.endpointWorkload(e)
			}
			if w.Namespace == "" {
				w.Namespace = s.Namespace
			}
			if w.ServiceAccount == "" {
				w.ServiceAccount = "default"
			}
			add(t.spiffeID(w.Namespace, w.ServiceAccount))
		}
	}
	sort.Strings(out)
	return out
}
