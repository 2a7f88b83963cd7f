// Package greeter is the Greeter service that the examples, tests and
// benchmarks run. Each reply says which instance answered, so that a caller
// can count where its traffic went.
package greeter

import (
	"context"

	"github.com/meshlet/meshlet/examples/greeterpb"
)

// Server answers SayHello with its version and instance name.
type Server struct {
	greeterpb.UnimplementedGreeterServer
	Version  string
	Instance string
}

// SayHello implements greeterpb.GreeterServer.
func (s *Server) SayHello(_ context.Context, req *greeterpb.HelloRequest) (*greeterpb.HelloReply, error) {
	return &greeterpb.HelloReply{Message: "hello " + req.GetName(), Version: s.Version, Instance: s.Instance}, nil
}
