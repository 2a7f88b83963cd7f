package grpcadapter

import (
	"context"

	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/dataplane"
)

// fault injects the route's fault into the call before its first
// attempt, and before the route's timeout starts, as gRPC-Go's fault
// filter does: it returns the status of an abort, or of ctx if it ended
// during a delay, and nil to go on. An httpStatus abort gets the code
// gRPC gives that HTTP status, as in gRPC-Go.
func fault(ctx context.Context, call *dataplane.Call) error {
	abort, err := call.Fault(ctx)
	if err != nil {
		return status.FromContextError(err).Err()
	}
	if abort != nil {
		return status.Error(abort.GRPC(), "mesh: RPC terminated due to fault injection")
	}
	return nil
}
