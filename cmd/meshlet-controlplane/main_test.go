package main

import (
	"strings"
	"testing"
)

func TestRunRefusesBadInput(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no config dir", []string{"--admin-address", "", "--xds-address", "127.0.0.1:0"}, nil, "config directory is required"},
		{"missing config dir", []string{"--config-dir", t.TempDir() + "/missing", "--xds-address", "127.0.0.1:0"}, nil, "missing"},
		{"bad log level", []string{"--log-level", "loud"}, nil, "--log-level"},
		{"bad duration in the environment", nil, map[string]string{"MESHLET_WARMUP": "soon"}, "MESHLET_WARMUP"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			err := run(tc.args)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("run(%q) = %v, want an error mentioning %q", tc.args, err, tc.want)
			}
		})
	}
}
