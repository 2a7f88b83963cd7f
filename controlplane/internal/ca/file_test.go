//go:build linux || darwin

package ca_test

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane/internal/ca"
)

// The CA reads its certificate, key and tokens only from regular files of
// at most 4 MiB, and never blocks on a named pipe or reads a device.
func TestNewRefusesFilesThatAreNotRegular(t *testing.T) {
	fifo := func(t *testing.T, path string) {
		if err := syscall.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		// A regression would block on the pipe; a writer lets it go, so
		// that the test fails instead of hanging.
		t.Cleanup(func() {
			if f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		})
	}
	zero := func(t *testing.T, path string) {
		if err := os.Symlink("/dev/zero", path); err != nil {
			t.Fatal(err)
		}
	}
	big := func(t *testing.T, path string) {
		if err := os.WriteFile(path, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 5<<20); err != nil { // sparse: no room on disk
			t.Fatal(err)
		}
	}
	// root writes a usable root to certFile and keyFile.
	root := func(t *testing.T, certFile, keyFile string) {
		t0, _ := fixedNow()
		cert, key := makeCert(t, caTemplate("test root", t0.Add(-time.Hour), t0.AddDate(1, 0, 0)), nil, nil)
		if certFile != "" {
			writePEM(t, certFile, certBlock(cert))
		}
		if keyFile != "" {
			writePEM(t, keyFile, keyBlock(t, key))
		}
	}

	tests := []struct {
		name  string
		setup func(t *testing.T, dir string) ca.Config
		want  []string
	}{
		{
			name: "certificate is a named pipe",
			setup: func(t *testing.T, dir string) ca.Config {
				cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
				fifo(t, cert)
				root(t, "", key)
				return ca.Config{CertFile: cert, KeyFile: key}
			},
			want: []string{"ca: read CA certificate: ", "ca.pem: not a regular file (named pipe)"},
		},
		{
			name: "key is a link to /dev/zero",
			setup: func(t *testing.T, dir string) ca.Config {
				cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
				root(t, cert, "")
				zero(t, key)
				return ca.Config{CertFile: cert, KeyFile: key}
			},
			want: []string{"ca: read CA key: ", "ca-key.pem: not a regular file (character device)"},
		},
		{
			name: "kept root is a named pipe",
			setup: func(t *testing.T, dir string) ca.Config {
				root(t, "", filepath.Join(dir, "root-key.pem"))
				fifo(t, filepath.Join(dir, "root-cert.pem"))
				return ca.Config{Dir: dir}
			},
			want: []string{"ca: read CA certificate: ", "root-cert.pem: not a regular file (named pipe)"},
		},
		{
			name: "tokens file is a named pipe",
			setup: func(t *testing.T, dir string) ca.Config {
				fifo(t, filepath.Join(dir, "tokens.yaml"))
				return ca.Config{TokensFile: filepath.Join(dir, "tokens.yaml")}
			},
			want: []string{"ca: read tokens file: ", "tokens.yaml: not a regular file (named pipe)"},
		},
		{
			name: "tokens file is a link to /dev/zero",
			setup: func(t *testing.T, dir string) ca.Config {
				zero(t, filepath.Join(dir, "tokens.yaml"))
				return ca.Config{TokensFile: filepath.Join(dir, "tokens.yaml")}
			},
			want: []string{"ca: read tokens file: ", "tokens.yaml: not a regular file (character device)"},
		},
		{
			name: "tokens file is too big",
			setup: func(t *testing.T, dir string) ca.Config {
				big(t, filepath.Join(dir, "tokens.yaml"))
				return ca.Config{TokensFile: filepath.Join(dir, "tokens.yaml")}
			},
			want: []string{"ca: read tokens file: ", "tokens.yaml: 5242880 bytes is over the 4 MiB limit for a file the CA reads"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.setup(t, t.TempDir())
			cfg.Log = discardLog()
			done := make(chan error, 1)
			go func() {
				_, err := ca.New(cfg)
				done <- err
			}()
			select {
			case err := <-done:
				wantErr(t, err, tt.want...)
			case <-time.After(10 * time.Second):
				t.Fatal("ca.New has not returned after 10s")
			}
		})
	}
}
