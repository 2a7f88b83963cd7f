package mesh_test

import (
	"fmt"
	"strings"
)

// The Istio config the tests give the greeter, built from a few pieces
// so that each piece is written once.

// sayHelloPath is the path of the greeter's only method, over gRPC and
// over HTTP.
const sayHelloPath = "/meshlet.example.greeter.v1.Greeter/SayHello"

// greeterRule returns the greeter's DestinationRule with spec, what
// follows its host: subsets, a trafficPolicy.
func greeterRule(spec string) string {
	return `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
spec:
  host: greeter
` + spec
}

// subsets returns DestinationRule subsets, one a version, each named
// after it and selecting its version label.
func subsets(versions ...string) string {
	var b strings.Builder
	b.WriteString("  subsets:\n")
	for _, v := range versions {
		fmt.Fprintf(&b, "  - name: %s\n    labels:\n      version: %s\n", v, v)
	}
	return b.String()
}

// trafficPolicy returns a DestinationRule's trafficPolicy of one setting,
// given as its lines below the trafficPolicy key, each indented 4 spaces.
func trafficPolicy(setting string) string { return "  trafficPolicy:\n" + setting }

// greeterRules is the DestinationRule every routing test uses; the
// VirtualService varies.
var greeterRules = greeterRule(subsets("v1", "v2"))

// lbRule is a DestinationRule with one load-balancer setting.
func lbRule(lb string) string { return greeterRule(trafficPolicy("    loadBalancer:\n" + lb + "\n")) }

// tlsRule is a DestinationRule whose tls mode to the greeter is mode.
func tlsRule(mode string) string {
	return greeterRule(trafficPolicy("    tls:\n      mode: " + mode + "\n"))
}

// greeterRoute returns the greeter's VirtualService with http, its list
// of HTTP routes.
func greeterRoute(http string) string {
	return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: greeter
spec:
  hosts:
  - greeter
  http:
` + http
}

// toGreeter returns an HTTP route that sends every call to subset of
// greeter (to all of it when ""), with extra settings of the route, its
// retries or timeout, indented 4 spaces.
func toGreeter(subset, extra string) string {
	r := "  - route:\n    - destination:\n        host: greeter\n"
	if subset != "" {
		r += "        subset: " + subset + "\n"
	}
	return r + extra
}

// splitRoute returns a VirtualService that sends end-user: jason to v2 and
// splits the rest v1/v2 by the given weights.
func splitRoute(v1, v2 int) string {
	return greeterRoute(fmt.Sprintf(`  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: greeter
        subset: v2
  - route:
    - destination:
        host: greeter
        subset: v1
      weight: %d
    - destination:
        host: greeter
        subset: v2
      weight: %d
`, v1, v2))
}

// matchRoute returns a VirtualService that sends the calls that match to
// v2, and the rest to v1; match is a route's match list, indented 4
// spaces.
func matchRoute(match string) string {
	return greeterRoute("  - match:\n" + match + `
    route:
    - destination:
        host: greeter
        subset: v2
` + toGreeter("v1", ""))
}

// emptySubset routes every call to subset v3, which no server has.
var emptySubset = greeterRule(subsets("v1", "v3")) + "---\n" + greeterRoute(toGreeter("v3", ""))

// secureServiceEntry makes greeter a ServiceEntry whose endpoints must
// prove the given subjectAltNames ("" for none: the endpoints' SPIFFE IDs).
func secureServiceEntry(san string) string {
	sans := ""
	if san != "" {
		sans = "  subjectAltNames:\n  - " + san + "\n"
	}
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: greeter
spec:
  hosts:
  - greeter
  ports:
  - number: %d
    name: http
    protocol: HTTP
  resolution: STATIC
  workloadSelector:
    labels:
      app: greeter
%s---
`, greeterPort, sans) + tlsRule("ISTIO_MUTUAL")
}

// authzPolicy returns an AuthorizationPolicy of the greeter with action
// (ALLOW or DENY) for calls of SayHello from service account principal.
func authzPolicy(name, action, principal string) string {
	return fmt.Sprintf(`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: %s
spec:
  selector:
    matchLabels:
      app: greeter
  action: %s
  rules:
  - from:
    - source:
        principals:
        - %s/ns/default/sa/%s
    to:
    - operation:
        paths:
        - %s
`, name, action, td, principal, sayHelloPath)
}
