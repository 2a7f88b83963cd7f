package config_test

import (
	"fmt"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

func ExampleParse() {
	cfg, err := config.Parse(map[string][]byte{"reviews.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
`)})
	if err != nil {
		fmt.Println(err)
		return
	}
	vs := cfg.VirtualServices[0]
	fmt.Println(vs.Meta, vs.Spec.Hosts[0])
	// Output: VirtualService default/reviews reviews.default.svc.cluster.local
}

func ExampleParse_errors() {
	_, err := config.Parse(map[string][]byte{"reviews.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
    mirror:
      host: reviews-shadow
    timeout: 0s
`)})
	fmt.Println(err)
	// Output:
	// reviews.yaml: VirtualService default/reviews: spec.http[0].mirror: out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)
	// reviews.yaml: VirtualService default/reviews: spec.http[0].timeout: must be greater than 0, got 0s (leave it out for no limit)
}

// A Kubernetes object beside the Istio config is skipped, and WithSkipped
// reports it, for the caller to log.
func ExampleWithSkipped() {
	cfg, err := config.Parse(map[string][]byte{"bookinfo.yaml": []byte(`
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - port: 9080
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
`)}, config.WithSkipped(func(s config.Skipped) {
		fmt.Printf("%s: %s %s is not Istio config; skipped\n", s.File, s.Kind, s.Name)
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cfg.VirtualServices[0].Meta)
	// Output:
	// bookinfo.yaml: Service reviews is not Istio config; skipped
	// VirtualService default/reviews
}

// An unknown kind of an Istio group is refused, with the kind it was
// probably meant to be.
func ExampleParse_kindTypo() {
	_, err := config.Parse(map[string][]byte{"reviews.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualServce
metadata:
  name: reviews
`)})
	fmt.Println(err)
	// Output:
	// reviews.yaml: VirtualServce default/reviews: kind: kind VirtualServce is not a kind of networking.istio.io (did you mean VirtualService?)
}

// A refusal says whether the field is planned, and what it waits for, or
// out of scope for a proxyless mesh, and why; and what to do now.
func ExampleParse_refusals() {
	_, err := config.Parse(map[string][]byte{"ratings.yaml": []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  gateways: [bookinfo-gateway]
  http:
  - mirror: {host: ratings}
    route:
    - destination: {host: ratings}
`)})
	fmt.Println(err)
	// Output:
	// ratings.yaml: VirtualService default/ratings: spec.http[0].mirror: out of scope for meshlet: a proxyless client would send each mirrored request twice, from the caller's own process (remove it)
	// ratings.yaml: VirtualService default/ratings: spec.gateways[0]: gateway "bookinfo-gateway" is out of scope for meshlet: a proxyless mesh has no gateway proxy (list only mesh, or leave gateways out)
}
