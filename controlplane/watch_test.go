//go:build linux || darwin

package controlplane_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

// routeWithWeights is goodRoute with the weights of v1 and v2.
func routeWithWeights(v1, v2 string) string {
	return strings.NewReplacer("weight: 80", "weight: "+v1, "weight: 20", "weight: "+v2).Replace(goodRoute)
}

// servedWeights returns the route weights of the VirtualService in force.
func servedWeights(t *testing.T, cp *controlplane.Server) []int {
	t.Helper()
	for _, r := range dump(t, cp).Resources {
		if r.Kind != "VirtualService" {
			continue
		}
		var spec struct {
			HTTP []struct {
				Route []struct{ Weight int }
			}
		}
		if err := json.Unmarshal(r.Spec, &spec); err != nil {
			t.Fatal(err)
		}
		var w []int
		for _, h := range spec.HTTP {
			for _, rd := range h.Route {
				w = append(w, rd.Weight)
			}
		}
		return w
	}
	return nil
}

// closeWithin closes cp and fails the test if Close has not returned
// within a deadline.
func closeWithin(t *testing.T, cp *controlplane.Server) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		cp.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close has not returned after 10s")
	}
}

// A named pipe or a link to a device in the config directory is refused,
// the last good config stays in force, and neither the watcher nor the
// shutdown hangs on it.
func TestWatchRefusesFilesThatAreNotRegular(t *testing.T) {
	tests := []struct {
		name string
		make func(t *testing.T, path string)
		want string
	}{
		{
			name: "named pipe",
			make: func(t *testing.T, path string) {
				if err := syscall.Mkfifo(path, 0o644); err != nil {
					t.Fatal(err)
				}
				// A regression would block on the pipe; a writer lets it
				// go, so that the test fails instead of hanging.
				t.Cleanup(func() {
					if f, err := os.OpenFile(path, os.O_RDWR|syscall.O_NONBLOCK, 0); err == nil {
						f.Close()
					}
				})
			},
			want: "x.yaml: not a regular file (named pipe); remove it",
		},
		{
			name: "link to /dev/zero",
			make: func(t *testing.T, path string) {
				if err := os.Symlink("/dev/zero", path); err != nil {
					t.Fatal(err)
				}
			},
			want: "x.yaml: not a regular file (a link to /dev/zero, a character device); remove it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
			cp := meshtest.StartControlPlane(t, dir)
			path := filepath.Join(dir, "x.yaml")
			tt.make(t, path)

			var d controlplane.ConfigDump
			meshtest.WaitUntil(t, 5*time.Second, "the refusal on /debug/config", func() bool {
				d = dump(t, cp)
				return d.LastError != nil
			})
			if !strings.Contains(d.LastError.Message, tt.want) {
				t.Errorf("error %q does not contain %q", d.LastError.Message, tt.want)
			}
			if got := servedWeights(t, cp); !slices.Equal(got, []int{80, 20}) {
				t.Errorf("served weights %v, want the last good config's [80 20]", got)
			}

			// The watcher still works: the file gone, the error clears,
			// and an edit is served.
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			meshtest.WriteFile(t, dir, "route.yaml", routeWithWeights("50", "50"))
			meshtest.WaitUntil(t, 5*time.Second, "the edit after the file is removed", func() bool {
				return dump(t, cp).LastError == nil && slices.Equal(servedWeights(t, cp), []int{50, 50})
			})
			closeWithin(t, cp)
		})
	}
}

// A config directory that is deleted or renamed away and made again is
// watched again: its content is served, and so are later edits.
func TestWatchFollowsAReplacedDirectory(t *testing.T) {
	tests := []struct {
		name    string
		replace func(t *testing.T, cp *controlplane.Server, dir string, files map[string]string)
	}{
		{
			name: "deleted and made again",
			replace: func(t *testing.T, cp *controlplane.Server, dir string, files map[string]string) {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				writeDir(t, dir, files)
			},
		},
		{
			name: "renamed away and made again",
			replace: func(t *testing.T, cp *controlplane.Server, dir string, files map[string]string) {
				if err := os.Rename(dir, dir+".old"); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { os.RemoveAll(dir + ".old") })
				writeDir(t, dir, files)
			},
		},
		{
			name: "gone for a while",
			replace: func(t *testing.T, cp *controlplane.Server, dir string, files map[string]string) {
				if err := os.RemoveAll(dir); err != nil {
					t.Fatal(err)
				}
				meshtest.WaitUntil(t, 5*time.Second, "the missing directory on /debug/config", func() bool {
					return dump(t, cp).LastError != nil
				})
				if got := servedWeights(t, cp); !slices.Equal(got, []int{80, 20}) {
					t.Errorf("served weights %v while the directory is gone, want the last good config's [80 20]", got)
				}
				writeDir(t, dir, files)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "config")
			writeDir(t, dir, map[string]string{"reviews.yaml": goodConfig, "route.yaml": goodRoute})
			cp := meshtest.StartControlPlane(t, dir)

			tt.replace(t, cp, dir, map[string]string{"reviews.yaml": goodConfig, "route.yaml": routeWithWeights("50", "50")})
			meshtest.WaitUntil(t, 5*time.Second, "the new directory's config", func() bool {
				return dump(t, cp).LastError == nil && slices.Equal(servedWeights(t, cp), []int{50, 50})
			})
			// Edits keep being served, in a new subdirectory too.
			meshtest.WriteFile(t, dir, "route.yaml", routeWithWeights("30", "70"))
			meshtest.WaitUntil(t, 5*time.Second, "an edit in the new directory", func() bool {
				return slices.Equal(servedWeights(t, cp), []int{30, 70})
			})
			if err := os.Remove(filepath.Join(dir, "route.yaml")); err != nil {
				t.Fatal(err)
			}
			meshtest.WriteFile(t, dir, "sub/route.yaml", routeWithWeights("10", "90"))
			meshtest.WaitUntil(t, 5*time.Second, "an edit in a new subdirectory", func() bool {
				return slices.Equal(servedWeights(t, cp), []int{10, 90})
			})
			meshtest.WriteFile(t, dir, "sub/route.yaml", routeWithWeights("90", "10"))
			meshtest.WaitUntil(t, 5*time.Second, "a second edit in the new subdirectory", func() bool {
				return slices.Equal(servedWeights(t, cp), []int{90, 10})
			})
			closeWithin(t, cp)
		})
	}
}

// writeDir makes dir and writes files (name -> content) into it.
func writeDir(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		meshtest.WriteFile(t, dir, name, content)
	}
}

// TestNonConfigFilesDoNotReload: a log written inside the config directory
// (the control plane's own, say) does not make it reload, which would
// write to the log again, in a loop.
func TestNonConfigFilesDoNotReload(t *testing.T) {
	dir := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": goodConfig})
	cp := meshtest.StartControlPlane(t, dir)
	loaded := dump(t, cp).LoadedAt
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(dir, "cp.log"), []byte(strings.Repeat("x", i+1)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Ten debounce periods without a reload. A reload that does not happen
	// sends no signal to wait for, so this bounded negative check watches
	// for one over a deadline instead.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if !dump(t, cp).LoadedAt.Equal(loaded) {
			t.Fatal("writing cp.log reloaded the config")
		}
	}
	// A YAML write is picked up.
	meshtest.WriteFile(t, dir, "other.yaml", goodRoute)
	meshtest.WaitUntil(t, 5*time.Second, "the YAML change", func() bool { return !dump(t, cp).LoadedAt.Equal(loaded) })
	for _, r := range dump(t, cp).Resources {
		if r.File == "cp.log" {
			t.Fatalf("cp.log was read as config")
		}
	}
}
