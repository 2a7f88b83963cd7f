//go:build linux || darwin

package config_test

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane/internal/config"
	"github.com/meshlet/meshlet/controlplane/internal/model"
)

const goodRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
`

// loadWithin runs Load and fails the test if it has not returned within
// a deadline: a FIFO, for one, must not block it.
func loadWithin(t *testing.T, dir string, opts ...config.Option) (*model.Config, error) {
	t.Helper()
	type result struct {
		cfg *model.Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		cfg, err := config.Load(dir, opts...)
		done <- result{cfg, err}
	}()
	select {
	case r := <-done:
		return r.cfg, r.err
	case <-time.After(10 * time.Second):
		t.Fatalf("Load(%s) has not returned after 10s", dir)
		return nil, nil
	}
}

// unblockFIFO opens the FIFO at path for writing and closes it, so that a
// reader stuck on it (a regression) gets EOF and the test ends.
func unblockFIFO(t *testing.T, path string) {
	t.Cleanup(func() {
		if f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
			f.Close()
		}
	})
}

func TestLoadRefusesFilesThatAreNotRegular(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir string)
		opts  []config.Option
		want  string // the whole error
	}{
		{
			name: "named pipe",
			setup: func(t *testing.T, dir string) {
				path := filepath.Join(dir, "x.yaml")
				if err := syscall.Mkfifo(path, 0o644); err != nil {
					t.Fatal(err)
				}
				unblockFIFO(t, path)
			},
			want: "x.yaml: not a regular file (named pipe); remove it",
		},
		{
			name: "link to a named pipe",
			setup: func(t *testing.T, dir string) {
				path := filepath.Join(dir, ".fifo")
				if err := syscall.Mkfifo(path, 0o644); err != nil {
					t.Fatal(err)
				}
				unblockFIFO(t, path)
				symlink(t, ".fifo", filepath.Join(dir, "x.yaml"))
			},
			want: "x.yaml: not a regular file (a link to .fifo, a named pipe); remove it",
		},
		{
			name:  "link to /dev/zero",
			setup: func(t *testing.T, dir string) { symlink(t, "/dev/zero", filepath.Join(dir, "zero.yaml")) },
			want:  "zero.yaml: not a regular file (a link to /dev/zero, a character device); remove it",
		},
		{
			name: "socket",
			setup: func(t *testing.T, dir string) {
				l, err := net.Listen("unix", filepath.Join(dir, "s.yml"))
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { l.Close() })
			},
			want: "s.yml: not a regular file (socket); remove it",
		},
		{
			name:  "over the default limit",
			setup: func(t *testing.T, dir string) { sparseFile(t, filepath.Join(dir, "big.yaml"), 5<<20+1<<19) },
			want:  "big.yaml: 5.5 MiB is over the 4 MiB limit for a config file (split it into smaller files)",
		},
		{
			name:  "one byte over the default limit",
			setup: func(t *testing.T, dir string) { sparseFile(t, filepath.Join(dir, "sub", "big.yaml"), 4<<20+1) },
			want:  "sub/big.yaml: 4194305 bytes is over the 4 MiB limit for a config file (split it into smaller files)",
		},
		{
			name: "over a limit set",
			setup: func(t *testing.T, dir string) {
				writeFile(t, filepath.Join(dir, "rule.yaml"), goodRule)
			},
			opts: []config.Option{config.WithMaxFileSize(64)},
			want: "rule.yaml: 105 bytes is over the 64 bytes limit for a config file (split it into smaller files)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			tt.setup(t, dir)
			cfg, err := loadWithin(t, dir, tt.opts...)
			if cfg != nil {
				t.Error("Load returned a config with an error")
			}
			errs := fieldErrors(t, err)
			if len(errs) != 1 || errs[0].Error() != tt.want {
				t.Errorf("got errors:\n%s\nwant:\n  %s", errorList(errs), tt.want)
			}
			if fe := errs[0]; fe.Resource != "" || fe.Path != "" {
				t.Errorf("a file-level error has Resource %q and Path %q, want both empty", fe.Resource, fe.Path)
			}
		})
	}
}

// A ConfigMap mounted by Kubernetes is symbolic links to regular files;
// those are read, and links to directories skipped, as before.
func TestLoadFollowsLinksToRegularFiles(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..data", "rule.yaml"), goodRule)
	symlink(t, filepath.Join("..data", "rule.yaml"), filepath.Join(dir, "rule.yaml"))
	symlink(t, "..data", filepath.Join(dir, "dir.yaml"))
	// Files that are not YAML are never opened, whatever they are.
	if err := syscall.Mkfifo(filepath.Join(dir, "pipe"), 0o644); err != nil {
		t.Fatal(err)
	}
	unblockFIFO(t, filepath.Join(dir, "pipe"))
	cfg, err := loadWithin(t, dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if len(cfg.DestinationRules) != 1 || cfg.DestinationRules[0].Meta.File != "rule.yaml" {
		t.Errorf("got %d DestinationRules, want the one in rule.yaml, read once", len(cfg.DestinationRules))
	}
}

// A problem with one file does not hide the problems of the others.
func TestLoadReportsBadFilesWithOtherErrors(t *testing.T) {
	dir := t.TempDir()
	symlink(t, "/dev/zero", filepath.Join(dir, "a.yaml"))
	writeFile(t, filepath.Join(dir, "b.yaml"), "kind: Gateway\n")
	_, err := loadWithin(t, dir)
	checkErrors(t, fieldErrors(t, err),
		want{"a.yaml", "", "", "not a regular file"},
		want{"b.yaml", "Gateway", "kind", "out of scope for meshlet"},
	)
}

func symlink(t *testing.T, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sparseFile makes a file of size bytes that takes no room on disk.
func sparseFile(t *testing.T, path string, size int64) {
	t.Helper()
	writeFile(t, path, "")
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
}
