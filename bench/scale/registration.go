//go:build linux

package main

// The instances of the registration churn; bench/internal/registration
// makes their Register streams, as bench/registrations does.

import (
	"fmt"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
)

// instance returns the registration of endpoint e (an address of 127/8,
// so that the control plane takes it as this host's own) in service k.
func instance(k int, e endpoint) *registrypb.Instance {
	svc := serviceName(k)
	return &registrypb.Instance{
		// The shape of mesh's IDs: node ID, then the listening address.
		Id:             fmt.Sprintf("meshlet~%s-%s.%s~%s.%s/%s:%d", svc, e.ip, benchNamespace, benchNamespace, wire.DomainSuffix, e.ip, e.port),
		Service:        svc,
		Namespace:      benchNamespace,
		ServiceAccount: svc,
		Address:        e.ip,
		Port:           uint32(e.port),
		ServicePort:    benchServicePort,
		Protocol:       "GRPC",
		Labels:         map[string]string{"app": svc},
		Locality:       &registrypb.Locality{},
	}
}
