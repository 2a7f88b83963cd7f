// Package controlplane is meshlet's control plane. It reads a directory of
// Istio YAML (ServiceEntry, WorkloadEntry, VirtualService and
// DestinationRule), validates all of it strictly, keeps a registry of the
// instances that meshlet servers register, and serves the result to gRPC-Go
// and meshlet clients as standard xDS over ADS.
//
// A config change is applied within a second if it is valid; an invalid one
// is refused with an error that names the file, the resource and the field,
// and the config before it stays in force. The admin port serves /healthz,
// /readyz, /debug/config (the model, the xDS resources and the last config
// error) and /debug/clients (every xDS client and what it acknowledged or
// rejected).
//
// The shortest use:
//
//	cp, err := controlplane.Start(ctx, controlplane.WithConfigDir("config"))
//	if err != nil { ... }
//	defer cp.Close()
//	// services connect with mesh.WithControlPlane(cp.XDSAddr())
package controlplane
