package mesh_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	_ "github.com/meshlet/meshlet/mesh/grpcxds" // the tests run gRPC-Go's xDS path too
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		runChild()
		return
	}
	goleak.VerifyTestMain(m,
		// gRPC-Go v1.85 drops the cleanup of the "tls" channel credentials
		// it builds for a bootstrap (internal/xds/xdsclient/clientimpl.go,
		// populateGRPCTransportConfigsFromServerConfig), so their file
		// watcher outlives the client: TestForeignXDSClient uses them as a
		// user in another language would. meshlet itself never builds
		// them.
		goleak.IgnoreTopFunction("google.golang.org/grpc/credentials/tls/certprovider/pemfile.(*watcher).run"))
}
