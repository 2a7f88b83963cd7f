// Package controlplane is meshlet's control plane. It reads a directory of
// Istio YAML (ServiceEntry, WorkloadEntry, WorkloadGroup, VirtualService,
// DestinationRule, PeerAuthentication and AuthorizationPolicy), validates
// all of it strictly, keeps a registry of the
// instances that meshlet servers register, and serves the result to gRPC-Go
// and meshlet clients as standard xDS over ADS.
//
// A config change is applied within a second if it is valid; an invalid one
// is refused with an error that names the file, the resource and the field,
// and the config before it stays in force. The admin port serves /healthz,
// /readyz, /debug/config (the model, the xDS resources and the last config
// error), /debug/clients (every xDS client and what it acknowledged or
// rejected, per type), /debug/describe?service= (what applies to a
// service), /debug/config_dump?workload= (what one workload was sent) and
// /metrics (Prometheus text: clients, pushes, NACKs, push latency, registry
// size, config reloads and errors, refused registrations; see
// docs/meshctl.md). Validate runs the same checks offline, as meshctl
// validate does.
//
// Its gRPC port (xDS, registration, the CA) is TLS with a certificate from
// its own CA, spiffe://<trust domain>/ns/<root namespace>/sa/
// meshlet-controlplane. Every stream's identity is the one its client
// certificate proves, never what it claims: a workload may register as
// instances only of the service its service account may serve (its own
// name, or what a WorkloadGroup binds), at its own address, and only it
// gets the server Listener of that address. The CA's root is kept in the
// state directory (DefaultStateDir), so that a restart keeps trust;
// workloads in other processes trust the control plane with that root
// file (mesh.EnvControlPlaneRoots).
//
// ClientBootstrap writes the GRPC_XDS_BOOTSTRAP file of a gRPC service
// outside meshlet's library (another language, or plain gRPC-Go) that
// follows the control plane with its own xDS client; meshctl bootstrap
// prints it, and meshctl agent keeps its certificate files current.
//
// The shortest use:
//
//	cp, err := controlplane.Start(ctx, controlplane.WithConfigDir("config"))
//	if err != nil { ... }
//	defer cp.Close()
//	// services connect with mesh.WithControlPlane(cp.XDSAddr())
package controlplane
