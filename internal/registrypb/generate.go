// Package registrypb holds the generated code of meshlet's registration
// protocol (proto/meshlet/registry/v1/registry.proto).
package registrypb

//go:generate protoc -I ../../proto --go_out=. --go_opt=module=github.com/meshlet/meshlet/internal/registrypb --go-grpc_out=. --go-grpc_opt=module=github.com/meshlet/meshlet/internal/registrypb meshlet/registry/v1/registry.proto
