package mesh

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshlet/meshlet/internal/xdspath"
)

// A program that does not import mesh/grpcxds is told to, rather than
// failing somewhere inside gRPC-Go.
func TestXDSPathNotLinked(t *testing.T) {
	o := xdsPathOnce{lookup: func() *xdspath.Path { return nil }}
	_, err := o.get(&Mesh{})
	if !errors.Is(err, errNoXDSPath) || !strings.Contains(err.Error(), `import _ "github.com/meshlet/meshlet/mesh/grpcxds"`) {
		t.Fatalf("got %v, want an error saying to import mesh/grpcxds", err)
	}
}
