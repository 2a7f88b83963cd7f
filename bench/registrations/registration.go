//go:build linux

package main

import (
	"fmt"

	"github.com/meshlet/meshlet/internal/registrypb"
	"github.com/meshlet/meshlet/internal/wire"
)

// The services the registrations fill. Every instance registers service
// port benchServicePort in namespace benchNamespace.
const (
	benchNamespace   = "default"
	benchServicePort = 9080
)

// serviceName is the name of service k of the benchmark.
func serviceName(k int) string { return fmt.Sprintf("bench-%d", k) }

// clusterName is the EDS cluster of service k, as the control plane names it.
func clusterName(k int) string {
	return wire.ClusterName(benchServicePort, "", wire.ServiceHost(serviceName(k), benchNamespace))
}

// instance returns registration i of n: service i%services, and an address
// and port no other registration has (127.1.0.0/16 upward, loopback).
func instance(i, services int) *registrypb.Instance {
	svc := serviceName(i % services)
	ip := fmt.Sprintf("127.%d.%d.%d", 1+i>>16, (i>>8)&0xff, i&0xff)
	port := uint32(10000 + i%50000)
	return &registrypb.Instance{
		// The shape of mesh's IDs: node ID, then the listening address.
		Id:             fmt.Sprintf("meshlet~%s-bench%d.%s~%s.%s/%s:%d", svc, i, benchNamespace, benchNamespace, wire.DomainSuffix, ip, port),
		Service:        svc,
		Namespace:      benchNamespace,
		ServiceAccount: svc,
		Address:        ip,
		Port:           port,
		ServicePort:    benchServicePort,
		Protocol:       "GRPC",
		Labels:         map[string]string{"app": svc, "version": "v1"},
		Locality:       &registrypb.Locality{},
	}
}

// instances returns registrations 0..n-1 over services services.
func instances(n, services int) []*registrypb.Instance {
	insts := make([]*registrypb.Instance, n)
	for i := range insts {
		insts[i] = instance(i, services)
	}
	return insts
}
