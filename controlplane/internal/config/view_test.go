package config_test

import (
	"testing"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// configView finds resources of a loaded config by name.
type configView struct {
	t   *testing.T
	cfg *model.Config
}

func (c *configView) vs(name string) *networking.VirtualService {
	c.t.Helper()
	for _, vs := range c.cfg.VirtualServices {
		if vs.Name == name {
			return vs.Spec
		}
	}
	c.t.Fatalf("no VirtualService %q", name)
	return nil
}
