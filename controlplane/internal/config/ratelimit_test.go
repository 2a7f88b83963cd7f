package config_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/model"
)

const rateLimitHead = `apiVersion: policy.meshlet.io/v1alpha1
kind: RateLimitPolicy
metadata:
  name: api
  namespace: shop
`

func TestRateLimitPolicyParsed(t *testing.T) {
	cfg, err := config.Parse(map[string][]byte{"rl.yaml": []byte(rateLimitHead + `spec:
  selector:
    matchLabels: {app: greeter}
  limit: {requestsPerUnit: 50, unit: second, burst: 10}
  match:
  - path: {prefix: /helloworld.Greeter/}
  - path: {exact: /hello}
    method: GET
    headers:
      X-Tenant: {regex: "a.*"}
  perBucket: {header: X-User, maxBuckets: 20}
---
apiVersion: policy.meshlet.io/v1alpha1
kind: RateLimitPolicy
metadata: {name: hourly, namespace: shop}
spec:
  limit: {requestsPerUnit: 1000, unit: hour}
  perBucket: {principal: true}
`)})
	if err != nil {
		t.Fatal(err)
	}
	want := []*model.RateLimitPolicy{{
		Meta: model.Meta{Kind: "RateLimitPolicy", Name: "api", Namespace: "shop", File: "rl.yaml"},
		Spec: &model.RateLimitSpec{
			Selector:        map[string]string{"app": "greeter"},
			RequestsPerUnit: 50, Unit: time.Second, Burst: 10,
			Match: []model.RateLimitMatch{
				{PathPrefix: "/helloworld.Greeter/"},
				{PathExact: "/hello", Method: "GET", Headers: []model.RateLimitHeader{{Name: "x-tenant", Regex: "a.*"}}},
			},
			PerBucket: &model.RateLimitPerBucket{Header: "x-user", MaxBuckets: 20},
		},
	}, {
		Meta: model.Meta{Kind: "RateLimitPolicy", Name: "hourly", Namespace: "shop", File: "rl.yaml"},
		Spec: &model.RateLimitSpec{
			RequestsPerUnit: 1000, Unit: time.Hour, Burst: 1000, // burst defaults to a unit's worth
			PerBucket: &model.RateLimitPerBucket{Principal: true, MaxBuckets: 1000},
		},
	}}
	if d := cmp.Diff(want, cfg.RateLimitPolicies); d != "" {
		t.Errorf("RateLimitPolicies (-want +got):\n%s", d)
	}
}

func TestRateLimitPolicyRefused(t *testing.T) {
	const res = "rl.yaml: RateLimitPolicy shop/api: "
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{{
		name: "negative rate",
		doc:  rateLimitHead + "spec:\n  limit: {requestsPerUnit: -5, unit: second}\n",
		want: []string{res + "spec.limit.requestsPerUnit: -5 is not allowed: it must be at least 1"},
	}, {
		name: "zero rate and zero burst",
		doc:  rateLimitHead + "spec:\n  limit: {requestsPerUnit: 0, unit: second, burst: 0}\n",
		want: []string{
			res + "spec.limit.requestsPerUnit: 0 is not allowed: it must be at least 1",
			res + "spec.limit.burst: 0 is not allowed: it must be at least 1",
		},
	}, {
		name: "fractional rate",
		doc:  rateLimitHead + "spec:\n  limit: {requestsPerUnit: 1.5, unit: second}\n",
		want: []string{res + "spec.limit.requestsPerUnit: expected a whole number of at least 1, got number 1.5"},
	}, {
		name: "no rate, no unit",
		doc:  rateLimitHead + "spec:\n  limit: {burst: 3}\n",
		want: []string{
			res + "spec.limit.requestsPerUnit: required: a whole number of at least 1",
			res + "spec.limit.unit: required: second, minute or hour",
		},
	}, {
		name: "unknown unit",
		doc:  rateLimitHead + "spec:\n  limit: {requestsPerUnit: 5, unit: day}\n",
		want: []string{res + `spec.limit.unit: "day" is not a unit (use second, minute or hour)`},
	}, {
		name: "no limit",
		doc:  rateLimitHead + "spec:\n  selector: {matchLabels: {app: a}}\n  limit: null\n",
		want: []string{res + "spec.limit: required: {requestsPerUnit, unit, burst}"},
	}, {
		name: "unknown fields",
		doc:  rateLimitHead + "spec:\n  limit: {requestsPerUnit: 5, unit: second, brust: 3}\n  matches: []\n",
		want: []string{
			res + `spec.matches: unknown field (did you mean "match"?); spec has limit, match, perBucket, selector`,
			res + `spec.limit.brust: unknown field (did you mean "burst"?); spec.limit has burst, requestsPerUnit, unit`,
		},
	}, {
		name: "maxBuckets below 1",
		doc:  rateLimitHead + "spec:\n  limit: {requestsPerUnit: 5, unit: second}\n  perBucket: {principal: true, maxBuckets: 0}\n",
		want: []string{res + "spec.perBucket.maxBuckets: 0 is not allowed: it must be at least 1"},
	}, {
		name: "maxBuckets over the cap",
		doc:  rateLimitHead + "spec:\n  limit: {requestsPerUnit: 5, unit: second}\n  perBucket: {header: x-user, maxBuckets: 1000000}\n",
		want: []string{res + "spec.perBucket.maxBuckets: 1000000 is over the limit of 100000 buckets per server"},
	}, {
		name: "perBucket keyed by nothing, or by both",
		doc: rateLimitHead + "spec:\n  limit: {requestsPerUnit: 5, unit: second}\n  perBucket: {principal: false}\n---\n" +
			strings.Replace(rateLimitHead, "name: api", "name: both", 1) + "spec:\n  limit: {requestsPerUnit: 5, unit: second}\n  perBucket: {principal: true, header: x-user}\n",
		want: []string{
			res + "spec.perBucket: keys buckets by nothing (set principal: true or header: NAME, or remove perBucket)",
			"rl.yaml: RateLimitPolicy shop/both: spec.perBucket: sets both principal and header (a bucket is keyed by one of them)",
		},
	}, {
		name: "bad matches",
		doc: rateLimitHead + `spec:
  limit: {requestsPerUnit: 5, unit: second}
  match:
  - {}
  - path: {exact: hello}
  - path: {exact: /a, prefix: /b}
    headers:
      x-a: {exact: a, prefix: b}
      ":path": {exact: /}
  - headers: {x-b: {regex: "("}}
`,
		want: []string{
			res + "spec.match[0]: matches every request (remove spec.match to limit every request)",
			res + `spec.match[1].path: "hello" does not start with / (a gRPC method is /package.Service/Method)`,
			res + "spec.match[2].path: sets both exact and prefix (set one)",
			res + `spec.match[2].headers[":path"]: not a request header name (match the path and method with path and method)`,
			res + `spec.match[2].headers["x-a"]: set exactly one of exact, prefix and regex`,
			res + "spec.match[3].headers[\"x-b\"].regex: invalid regular expression (RE2 syntax): error parsing regexp: missing closing ): `(`",
		},
	}, {
		name: "version",
		doc:  strings.Replace(rateLimitHead, "v1alpha1", "v1", 1) + "spec:\n  limit: {requestsPerUnit: 5, unit: second}\n",
		want: []string{res + `apiVersion: apiVersion "policy.meshlet.io/v1" is not supported for RateLimitPolicy (use policy.meshlet.io/v1alpha1)`},
	}, {
		name: "kind",
		doc:  strings.Replace(rateLimitHead, "kind: RateLimitPolicy", "kind: RateLimit", 1) + "spec: {}\n",
		want: []string{"rl.yaml: RateLimit shop/api: kind: kind RateLimit is not a kind of policy.meshlet.io (it has RateLimitPolicy)"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse(map[string][]byte{"rl.yaml": []byte(tc.doc)})
			var got []string
			for _, e := range flatten(err) {
				var fe *config.FieldError
				if !errors.As(e, &fe) {
					t.Fatalf("%v is not a *FieldError", e)
				}
				got = append(got, fe.Error())
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("errors (-want +got):\n%s", d)
			}
		})
	}
}

// flatten returns the errors that errors.Join joined in err.
func flatten(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	if err == nil {
		return nil
	}
	return []error{err}
}
