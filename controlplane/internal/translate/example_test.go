package translate_test

import (
	"fmt"

	"github.com/meshlet/meshlet/controlplane/internal/model"
	"github.com/meshlet/meshlet/controlplane/internal/registry"
	"github.com/meshlet/meshlet/controlplane/internal/translate"
)

// One registered instance, with no configuration, makes an implicit service
// and its four resources; a gRPC xDS server address adds its Listener.
func ExampleBuild() {
	out, err := translate.Build(translate.Input{
		Config: &model.Config{},
		Instances: []registry.Instance{{
			ID: "ratings-1", Service: "ratings", Namespace: "default",
			Address: "10.0.0.7", Port: 50051, ServicePort: 9080, Protocol: "GRPC",
		}},
		ServerAddresses: []string{"10.0.0.7:50051"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, l := range out.Listeners {
		fmt.Println("listener:", l.GetName())
	}
	fmt.Println("route:", out.Routes[0].GetName())
	fmt.Println("cluster:", out.Clusters[0].GetName())
	fmt.Println("endpoints:", out.Endpoints[0].GetClusterName())
	fmt.Printf("service: %+v\n", out.Services[0])
	// Output:
	// listener: ratings.default.svc.cluster.local:9080
	// listener: xds.istio.io/grpc/lds/inbound/10.0.0.7:50051
	// route: ratings.default.svc.cluster.local:9080
	// cluster: outbound|9080||ratings.default.svc.cluster.local
	// endpoints: outbound|9080||ratings.default.svc.cluster.local
	// service: {Host:ratings.default.svc.cluster.local Namespace:default Ports:[{Number:9080 TargetPort:50051 Name: Protocol:GRPC}]}
}
