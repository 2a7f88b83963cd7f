// Package capb holds the generated code of the control plane's certificate
// authority protocol (proto/meshlet/ca/v1/ca.proto).
package capb

//go:generate protoc -I ../../proto --go_out=. --go_opt=module=github.com/meshlet/meshlet/internal/capb --go-grpc_out=. --go-grpc_opt=module=github.com/meshlet/meshlet/internal/capb meshlet/ca/v1/ca.proto
