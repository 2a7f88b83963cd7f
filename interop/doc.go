// Package interop holds meshlet's interop tests: gRPC clients outside
// meshlet's library (plain gRPC-Go, Python, Node), with their own xDS
// clients and nothing of meshlet but a GRPC_XDS_BOOTSTRAP file, follow
// meshlet's real control plane and call meshlet Go servers and plain
// servers written in those languages.
//
// The package has no code of its own, only tests and the programs they
// run:
//
//   - grpcgo/: a client on plain gRPC-Go (its own xDS client, none of
//     meshlet's packages), which reaches the control plane with gRPC's tls
//     channel credentials and its SVID;
//   - python/: client.py and server.py, on Debian's python3-grpcio (gRPC
//     C-core 1.51) for /usr/bin/python3;
//   - node/: client.js and server.js, on @grpc/grpc-js and
//     @grpc/grpc-js-xds at the versions pinned in node/package-lock.json.
//
// All speak the Greeter service of proto/meshlet/example/greeter/v1
// through gRPC's generic API, with messages encoded by hand (no protoc,
// no generated code). The tests check, for each client language and
// against each server language (meshlet Go servers, plain Python and Node
// servers declared by ServiceEntry and WorkloadEntry): a weighted split,
// a header match, a retry that outlasts a failing endpoint, a route
// timeout, and that no client NACKs anything the control plane sends.
//
// Install the clients once, then run the tests:
//
//	scripts/install-interop
//	go test -race ./interop/
//
// A missing python3-grpcio or node_modules fails the tests with the
// command that installs it; they never skip. ./test runs
// scripts/install-interop before the Go tests.
package interop
