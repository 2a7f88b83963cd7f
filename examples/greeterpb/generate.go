// Package greeterpb is the generated code of the Greeter service that the
// examples, tests and benchmarks run
// (proto/meshlet/example/greeter/v1/greeter.proto).
package greeterpb

//go:generate protoc -I ../../proto --go_out=. --go_opt=module=github.com/meshlet/meshlet/examples/greeterpb --go-grpc_out=. --go-grpc_opt=module=github.com/meshlet/meshlet/examples/greeterpb meshlet/example/greeter/v1/greeter.proto
