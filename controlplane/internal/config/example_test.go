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
	// reviews.yaml: VirtualService default/reviews: spec.http[0].mirror: not supported by meshlet (remove it)
	// reviews.yaml: VirtualService default/reviews: spec.http[0].timeout: must be greater than 0, got 0s (leave it out for no limit)
}
