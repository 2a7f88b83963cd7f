// Package module finds the meshlet module the benchmarks run from, builds
// its commands, and names its commit, so that a figure can say which code
// it measured.
package module

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Root returns the root directory of the module in the working directory.
func Root(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the meshlet module: run from the repository (go run ./bench/...)")
	}
	return filepath.Dir(gomod), nil
}

// Build builds package pkg ("./cmd/meshlet-controlplane") of the module at
// root into the file out, with the build tags tags.
func Build(ctx context.Context, root, pkg, out string, tags ...string) error {
	cmd := exec.CommandContext(ctx, "go", "build", "-o", out, "-tags", strings.Join(tags, ","), pkg)
	cmd.Dir = root
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w", pkg, err)
	}
	return nil
}

// Commit names the commit checked out at root, "-dirty" when the work tree
// has changes.
func Commit(ctx context.Context, root string) string {
	cmd := exec.CommandContext(ctx, "git", "describe", "--always", "--dirty", "--abbrev=12")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "an unknown commit"
	}
	return strings.TrimSpace(string(out))
}
