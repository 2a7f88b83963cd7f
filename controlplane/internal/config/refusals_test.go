package config_test

import (
	"encoding/json"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// refusalReasons pins the exact reason of every field that meshlet
// refuses, by kind and field; a subset's traffic policy has the reasons of
// the top-level one. Each says whether the field is planned (and what it
// waits for) or out of scope for a proxyless mesh (and why), and what to
// do now.
var refusalReasons = map[string]string{
	"AuthorizationPolicy provider":                                                     "out of scope for meshlet: a CUSTOM provider is an external authorizer, which meshlet does not call (use ALLOW or DENY rules)",
	"AuthorizationPolicy rules.from.source.ipBlocks":                                   "out of scope for meshlet: callers are identified by their mTLS identity, not their address (use principals, namespaces or serviceAccounts)",
	"AuthorizationPolicy rules.from.source.notIpBlocks":                                "out of scope for meshlet: callers are identified by their mTLS identity, not their address (use principals, namespaces or serviceAccounts)",
	"AuthorizationPolicy rules.from.source.notRemoteIpBlocks":                          "out of scope for meshlet: callers are identified by their mTLS identity, not their address (use principals, namespaces or serviceAccounts)",
	"AuthorizationPolicy rules.from.source.notRequestPrincipals":                       "planned, not yet supported: request principals come from JWT request authentication, which is on meshlet's roadmap (use principals, namespaces or serviceAccounts for now)",
	"AuthorizationPolicy rules.from.source.notTrustDomains":                            "out of scope for meshlet: notPrincipals name the trust domain already (use notPrincipals)",
	"AuthorizationPolicy rules.from.source.remoteIpBlocks":                             "out of scope for meshlet: callers are identified by their mTLS identity, not their address (use principals, namespaces or serviceAccounts)",
	"AuthorizationPolicy rules.from.source.requestPrincipals":                          "planned, not yet supported: request principals come from JWT request authentication, which is on meshlet's roadmap (use principals, namespaces or serviceAccounts for now)",
	"AuthorizationPolicy rules.from.source.trustDomains":                               "out of scope for meshlet: principals name the trust domain already (use principals)",
	"AuthorizationPolicy rules.to.operation.hosts":                                     "out of scope for meshlet: a workload's policy covers every host it serves (use paths, methods or ports)",
	"AuthorizationPolicy rules.to.operation.notHosts":                                  "out of scope for meshlet: a workload's policy covers every host it serves (use paths, methods or ports)",
	"AuthorizationPolicy targetRef":                                                    "out of scope for meshlet: it attaches a policy to a gateway or a Kubernetes Service, and meshlet has neither (select workloads with selector.matchLabels)",
	"AuthorizationPolicy targetRefs":                                                   "out of scope for meshlet: it attaches a policy to a gateway or a Kubernetes Service, and meshlet has neither (select workloads with selector.matchLabels)",
	"DestinationRule exportTo":                                                         "out of scope for meshlet: every namespace sees every resource, as with exportTo: [\"*\"] (remove it)",
	"DestinationRule trafficPolicy.connectionPool.tcp.connectTimeout":                  "planned, not yet supported: meshlet bounds the connections open (tcp.maxConnections) and does not yet set how they are made, kept alive or how long they live (remove it for now)",
	"DestinationRule trafficPolicy.connectionPool.tcp.tcpKeepalive":                    "planned, not yet supported: meshlet bounds the connections open (tcp.maxConnections) and does not yet set how they are made, kept alive or how long they live (remove it for now)",
	"DestinationRule trafficPolicy.connectionPool.tcp.maxConnectionDuration":           "planned, not yet supported: meshlet bounds the connections open (tcp.maxConnections) and does not yet set how they are made, kept alive or how long they live (remove it for now)",
	"DestinationRule trafficPolicy.connectionPool.tcp.idleTimeout":                     "planned, not yet supported: meshlet bounds the connections open (tcp.maxConnections) and does not yet set how they are made, kept alive or how long they live (remove it for now)",
	"DestinationRule trafficPolicy.connectionPool.http.maxConcurrentStreams":           "planned, not yet supported: meshlet bounds requests and retries in flight (http2MaxRequests, maxRetries) and not yet connections or their lifetime (remove it for now)",
	"DestinationRule trafficPolicy.connectionPool.http.http2KeepAlive":                 "planned, not yet supported: meshlet bounds requests and retries in flight (http2MaxRequests, maxRetries) and not yet connections or their lifetime (remove it for now)",
	"DestinationRule trafficPolicy.connectionPool.http.http1MaxPendingRequests":        "planned, not yet supported: meshlet's clients queue no request for a connection (gRPC and HTTP/2 multiplex); http2MaxRequests bounds requests in flight (use it, and remove this)",
	"DestinationRule trafficPolicy.connectionPool.http.h2UpgradePolicy":                "out of scope for meshlet: meshlet's clients speak the protocol of their transport, gRPC over HTTP/2 or the caller's net/http (remove it)",
	"DestinationRule trafficPolicy.connectionPool.http.useClientProtocol":              "out of scope for meshlet: meshlet's clients speak the protocol of their transport, gRPC over HTTP/2 or the caller's net/http (remove it)",
	"DestinationRule trafficPolicy.loadBalancer.backendUtilization":                    "planned, not yet supported: balancing by the load that endpoints report is on meshlet's roadmap (use simple or consistentHash for now)",
	"DestinationRule trafficPolicy.loadBalancer.consistentHash.httpCookie":             "out of scope for meshlet: gRPC-Go hashes only on request headers, and meshlet balances gRPC and HTTP calls alike (use httpHeaderName)",
	"DestinationRule trafficPolicy.loadBalancer.consistentHash.httpQueryParameterName": "out of scope for meshlet: gRPC-Go hashes only on request headers, and meshlet balances gRPC and HTTP calls alike (use httpHeaderName)",
	"DestinationRule trafficPolicy.loadBalancer.consistentHash.maglev":                 "out of scope for meshlet: gRPC-Go has ring hash only (use ringHash, or leave it out)",
	"DestinationRule trafficPolicy.loadBalancer.consistentHash.useSourceIp":            "out of scope for meshlet: gRPC-Go hashes only on request headers, and meshlet balances gRPC and HTTP calls alike (use httpHeaderName)",
	"DestinationRule trafficPolicy.loadBalancer.localityLbSetting":                     "planned, not yet supported: locality weights and failover order are on meshlet's roadmap (remove it for now)",
	"DestinationRule trafficPolicy.loadBalancer.warmup":                                "planned, not yet supported: slow start for new endpoints is on meshlet's roadmap (remove it for now)",
	"DestinationRule trafficPolicy.loadBalancer.warmupDurationSecs":                    "planned, not yet supported: slow start for new endpoints is on meshlet's roadmap (remove it for now)",
	"DestinationRule trafficPolicy.loadBalancer.zoneAwareLbSetting":                    "planned, not yet supported: locality weights and failover order are on meshlet's roadmap (remove it for now)",
	"DestinationRule trafficPolicy.outlierDetection.consecutiveErrors":                 "deprecated by Istio: use consecutive5xxErrors, or consecutiveGatewayErrors for what this field counted (502, 503 and 504)",
	"DestinationRule trafficPolicy.outlierDetection.failurePercentageThreshold":        "planned, not yet supported: failure-percentage ejection is on meshlet's roadmap (use consecutive5xxErrors or consecutiveGatewayErrors for now)",
	"DestinationRule trafficPolicy.outlierDetection.minHealthPercent":                  "out of scope for meshlet: it sets Envoy's panic threshold, and neither gRPC-Go nor meshlet's balancer has a panic mode (remove it)",
	"DestinationRule trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes":    "planned, not yet supported: choosing which status codes count as errors is on meshlet's roadmap; 5xx count now (remove it for now)",
	"DestinationRule trafficPolicy.portLevelSettings":                                  "planned, not yet supported: per-port traffic policies are on meshlet's roadmap (set the policy for the whole rule or for a subset for now)",
	"DestinationRule trafficPolicy.proxyProtocol":                                      "out of scope for meshlet: it tells a server the address a proxy received a connection from, and there is no proxy (remove it)",
	"DestinationRule trafficPolicy.retryBudget.budgetInterval":                         "planned, not yet supported: the budget counts the requests in flight now; a budget over an interval is not implemented (remove it)",
	"DestinationRule trafficPolicy.tls.caCertCredentialName":                           "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.caCertificates":                                 "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.caCrl":                                          "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.clientCertificate":                              "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.credentialName":                                 "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.insecureSkipVerify":                             "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.privateKey":                                     "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.sni":                                            "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tls.subjectAltNames":                                "out of scope for meshlet: meshlet issues the certificates and checks SPIFFE identities (set mode ISTIO_MUTUAL or DISABLE, and nothing else)",
	"DestinationRule trafficPolicy.tunnel":                                             "out of scope for meshlet: it tunnels connections through a proxy, and meshlet's clients connect directly (remove it)",
	"DestinationRule workloadSelector":                                                 "out of scope for meshlet: every client gets the same routes and clusters, so they cannot depend on the caller (route on a header the caller sets)",
	"ServiceEntry addresses":                                                           "out of scope for meshlet: clients dial the host name, never a virtual IP, as nothing captures their traffic (remove it)",
	"ServiceEntry endpoints.network":                                                   "out of scope for meshlet: the mesh is one network, with no gateway between networks (remove it)",
	"ServiceEntry exportTo":                                                            "out of scope for meshlet: every namespace sees every resource, as with exportTo: [\"*\"] (remove it)",
	"VirtualService exportTo":                                                          "out of scope for meshlet: every namespace sees every resource, as with exportTo: [\"*\"] (remove it)",
	"VirtualService http.corsPolicy":                                                   "out of scope for meshlet: CORS answers browsers, which reach services through an ingress, not the mesh (handle CORS in the server, or at the ingress)",
	"VirtualService http.delegate":                                                     "out of scope for meshlet: meshlet keeps the routes of a host in one VirtualService (write the delegate's routes here)",
	"VirtualService http.directResponse":                                               "out of scope for meshlet: meshlet's clients send every request to a server and answer none themselves (serve the response from a server)",
	"VirtualService http.fault.abort.http2Error":                                       "out of scope for meshlet: Istio does not implement it, and a gRPC client and an HTTP/1.1 client could not inject it alike (use httpStatus or grpcStatus)",
	"VirtualService http.fault.delay.exponentialDelay":                                 "out of scope for meshlet: Istio does not implement it, and neither Envoy's fault filter nor gRPC-Go has it (use fixedDelay)",
	"VirtualService http.headers":                                                      "planned, not yet supported: setting and removing headers is on meshlet's roadmap, for gRPC and HTTP alike (set them in the calling code for now)",
	"VirtualService http.match.authority":                                              "out of scope for meshlet: a route applies only to the hosts of its VirtualService already (list the hosts in spec.hosts, and remove it)",
	"VirtualService http.match.queryParams":                                            "out of scope for meshlet: gRPC-Go skips any route that matches query parameters, and meshlet's routes serve gRPC and HTTP clients alike (match on uri, headers or method)",
	"VirtualService http.match.scheme":                                                 "out of scope for meshlet: every call in the mesh has the same scheme, with mTLS below it (remove it)",
	"VirtualService http.match.sourceLabels":                                           "out of scope for meshlet: every client gets the same routes and clusters, so they cannot depend on the caller (route on a header the caller sets)",
	"VirtualService http.match.sourceNamespace":                                        "out of scope for meshlet: every client gets the same routes and clusters, so they cannot depend on the caller (route on a header the caller sets)",
	"VirtualService http.match.statPrefix":                                             "planned, not yet supported: meshlet's metrics label each request with its route's name, not a stat prefix (remove it; give the route a name)",
	"VirtualService http.mirror":                                                       "out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)",
	"VirtualService http.mirrorPercent":                                                "out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)",
	"VirtualService http.mirrorPercentage":                                             "out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)",
	"VirtualService http.mirrors":                                                      "out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)",
	"VirtualService http.redirect":                                                     "out of scope for meshlet: a redirect needs a client that follows it, and gRPC clients cannot (call the new location directly)",
	"VirtualService http.retries.retryIgnorePreviousHosts":                             "out of scope for meshlet: meshlet's HTTP client always retries on endpoints it has not tried yet, and gRPC-Go has no such setting (remove it)",
	"VirtualService http.retries.retryRemoteLocalities":                                "planned, not yet supported: retrying in other localities is on meshlet's roadmap (remove it for now)",
	"VirtualService http.rewrite":                                                      "out of scope for meshlet: the caller sends the path and authority it calls, and gRPC-Go cannot rewrite them (change them in the caller, or serve both)",
	"VirtualService http.route.headers":                                                "planned, not yet supported: setting and removing headers is on meshlet's roadmap, for gRPC and HTTP alike (set them in the calling code for now)",
	"VirtualService tcp":                                                               "out of scope for meshlet: it routes TCP and TLS connections, and meshlet routes HTTP and gRPC requests only (remove it)",
	"VirtualService tls":                                                               "out of scope for meshlet: it routes TCP and TLS connections, and meshlet routes HTTP and gRPC requests only (remove it)",
	"WorkloadEntry network":                                                            "out of scope for meshlet: the mesh is one network, with no gateway between networks (remove it)",
	"WorkloadGroup metadata.annotations":                                               "out of scope for meshlet: Istio puts them on the WorkloadEntry objects it makes for registered workloads, and meshlet makes none (remove it)",
	"WorkloadGroup probe":                                                              "out of scope for meshlet: a registration lives as long as its connection, and servers report SERVING themselves (remove it)",
	"WorkloadGroup template.address":                                                   "out of scope for meshlet: a registered instance's address is the one its connection comes from (remove it)",
	"WorkloadGroup template.locality":                                                  "out of scope for meshlet: instances register their locality (remove it)",
	"WorkloadGroup template.network":                                                   "out of scope for meshlet: the mesh is one network, with no gateway between networks (remove it)",
	"WorkloadGroup template.ports":                                                     "out of scope for meshlet: instances register the ports they serve (remove it)",
	"WorkloadGroup template.weight":                                                    "out of scope for meshlet: instances register their weight (remove it)",
}

// baseSpecs are valid specs, one per kind, that refused fields are added
// to.
var baseSpecs = map[string]string{
	"VirtualService":      `{"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews"}}]}]}`,
	"DestinationRule":     `{"host": "reviews", "subsets": [{"name": "v1"}]}`,
	"ServiceEntry":        `{"hosts": ["reviews"], "ports": [{"number": 9080, "name": "http", "protocol": "HTTP"}], "resolution": "STATIC", "endpoints": [{"address": "10.0.0.1"}]}`,
	"WorkloadEntry":       `{"address": "10.0.0.1", "labels": {"app": "reviews"}}`,
	"WorkloadGroup":       `{"template": {"serviceAccount": "reviews"}}`,
	"AuthorizationPolicy": `{"action": "ALLOW"}`,
}

// TestRefusalReasons sets each refused field of each kind, one at a time,
// and checks the exact error: file, resource, field path and reason.
func TestRefusalReasons(t *testing.T) {
	used := map[string]bool{}
	for kind, fields := range config.RefusedFields() {
		for pattern, reason := range fields {
			key := kind + " " + strings.TrimPrefix(pattern, "subsets.")
			want, ok := refusalReasons[key]
			if !ok {
				t.Errorf("%s %s: refused with %q, which no entry of refusalReasons pins", kind, pattern, reason)
				continue
			}
			used[key] = true
			t.Run(kind+" "+pattern, func(t *testing.T) {
				var spec map[string]any
				if err := json.Unmarshal([]byte(baseSpecs[kind]), &spec); err != nil {
					t.Fatal(err)
				}
				path := config.SetSample(kind, spec, pattern)
				doc, err := yaml.Marshal(map[string]any{
					"apiVersion": apiVersion(kind), "kind": kind, "metadata": map[string]any{"name": "x"}, "spec": spec,
				})
				if err != nil {
					t.Fatal(err)
				}
				if kind == "WorkloadEntry" {
					doc = append(doc, "---\n"+selectingSE...)
				}
				_, err = config.Parse(map[string][]byte{"x.yaml": doc})
				line := "x.yaml: " + kind + " default/x: " + path + ": " + want
				for _, fe := range fieldErrors(t, err) {
					if fe.Path == path {
						if fe.Error() != line {
							t.Errorf("got  %s\nwant %s", fe.Error(), line)
						}
						return
					}
				}
				t.Errorf("no error at %s; want %s\ngot:\n%v", path, line, err)
			})
		}
	}
	for key := range refusalReasons {
		if !used[key] {
			t.Errorf("refusalReasons[%q]: no field is refused with it", key)
		}
	}
}

func apiVersion(kind string) string {
	if kind == "AuthorizationPolicy" || kind == "PeerAuthentication" {
		return "security.istio.io/v1"
	}
	return "networking.istio.io/v1"
}
