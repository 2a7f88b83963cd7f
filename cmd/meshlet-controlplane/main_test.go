package main

import (
	"bytes"
	"context"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/meshtest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// runOnce runs the command with args until it returns, which it must do
// by itself, and returns its exit code and output.
func runOnce(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut meshtest.LogBuffer
	code = run(t.Context(), args, &out, &errOut)
	return code, out.String(), errOut.String()
}

const serviceEntry = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  ports:
  - number: 9080
    name: grpc
    protocol: GRPC
  resolution: STATIC
`

// --help exits 0 and shows, for every flag, its environment variable and
// its default, as package controlplane states it.
func TestHelpListsEveryFlagWithItsVariableAndDefault(t *testing.T) {
	for _, arg := range []string{"--help", "-h", "-help"} {
		code, out, errOut := runOnce(t, arg)
		if code != exitOK || errOut != "" {
			t.Fatalf("%s: exit %d, stderr %q; want 0 and nothing", arg, code, errOut)
		}
		if arg != "--help" {
			continue
		}
		_, table := flagSet(&settings{})
		blocks := map[string]string{} // flag -> its lines in the help
		for _, b := range strings.Split(out, "\n  --")[1:] {
			name, _, _ := strings.Cut(b, "\n")
			name, _, _ = strings.Cut(name, " ")
			blocks[name] = b
		}
		for _, st := range table {
			b, ok := blocks[st.flag]
			switch {
			case st.env == "":
				t.Errorf("--%s has no environment variable", st.flag)
			case !ok:
				t.Errorf("--help does not list --%s:\n%s", st.flag, out)
			case !regexp.MustCompile(`\n\s+env ` + st.env + `(=true)?; (default |required|use --)`).MatchString(b):
				t.Errorf("--help for --%s does not give its variable %s and its default:\n  --%s", st.flag, st.env, b)
			}
		}
		for flag, want := range map[string]string{
			"xds-address":             "default " + controlplane.DefaultXDSAddress,
			"admin-address":           "default " + controlplane.DefaultAdminAddress,
			"registration-grace":      "default 10s",
			"drain-ack-timeout":       "default 5s",
			"debounce-after":          "default 20ms",
			"debounce-max":            "default 1s",
			"registry-debounce-after": "default 20ms",
			"registry-debounce-max":   "default 200ms",
			"svid-ttl":                "default 1h", // not 1h0m0s
			"trust-domain":            "default " + controlplane.DefaultTrustDomain,
			"max-streams":             "default 10000",
			"config-dir":              "env MESHLET_CONFIG_DIR; required",
			"ca-in-memory":            "env MESHLET_CA_IN_MEMORY=true; default false",
			"drain-timeout":           "env MESHLET_DRAIN_TIMEOUT; use --drain-ack-timeout",
			"version":                 "print the version",
		} {
			if !strings.Contains(blocks[flag], want) || strings.Contains(blocks[flag], "0m0s") {
				t.Errorf("--help for --%s does not say %q:\n  --%s", flag, want, blocks[flag])
			}
		}
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := runOnce(t, "--version")
	if code != exitOK || !strings.HasPrefix(out, "meshlet-controlplane ") || !strings.Contains(out, "go "+runtime.Version()) {
		t.Fatalf("--version: exit %d, output %q; want 0, the name and the Go version", code, out)
	}

	built := &debug.BuildInfo{
		GoVersion: "go1.99.1",
		Main:      debug.Module{Path: "github.com/meshlet/meshlet", Version: "v1.2.3"},
		Settings: []debug.BuildSetting{
			{Key: "GOOS", Value: "plan9"}, {Key: "GOARCH", Value: "arm"},
			{Key: "vcs", Value: "git"}, {Key: "vcs.revision", Value: "0123456789abcdef"},
			{Key: "vcs.time", Value: "2026-11-02T10:00:00Z"}, {Key: "vcs.modified", Value: "true"},
		},
	}
	want := `meshlet-controlplane v1.2.3
module github.com/meshlet/meshlet
revision 0123456789abcdef (2026-11-02T10:00:00Z, with uncommitted changes)
go go1.99.1 plan9/arm
`
	if got := versionText(built); got != want {
		t.Errorf("versionText =\n%s\nwant\n%s", got, want)
	}
	noVCS := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/meshlet/meshlet"}}
	if got := versionText(noVCS); strings.Contains(got, "revision") || !strings.HasPrefix(got, "meshlet-controlplane (devel)\n") {
		t.Errorf("versionText without VCS information = %q", got)
	}
}

func TestRunRefusesBadInput(t *testing.T) {
	config := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": serviceEntry})
	cases := []struct {
		name string
		args []string
		env  map[string]string
		code int
		want string
	}{
		{"no config dir", []string{"--xds-address", "127.0.0.1:0"}, nil, exitUsage,
			"meshlet-controlplane: --config-dir (or MESHLET_CONFIG_DIR) is required: a directory of Istio YAML, e.g. examples/config\n"},
		{"missing config dir", []string{"--config-dir", t.TempDir() + "/missing", "--xds-address", "127.0.0.1:0", "--admin-address", ""}, nil, exitError, "missing"},
		{"bad log level", []string{"--config-dir", config, "--log-level", "loud"}, nil, exitUsage, `--log-level (or MESHLET_LOG_LEVEL) "loud" is not debug, info, warn or error`},
		{"bad duration in the environment", []string{"--config-dir", config}, map[string]string{"MESHLET_WARMUP": "soon"}, exitUsage,
			`MESHLET_WARMUP="soon" is not a valid duration (e.g. 500ms, 5s or 1h)`},
		{"bad bool in the environment", []string{"--config-dir", config}, map[string]string{"MESHLET_CA_IN_MEMORY": "yes"}, exitUsage,
			`MESHLET_CA_IN_MEMORY="yes" is not a valid bool (true or false)`},
		{"bad number in the environment", []string{"--config-dir", config}, map[string]string{"MESHLET_MAX_STREAMS": "many"}, exitUsage,
			`MESHLET_MAX_STREAMS="many" is not a valid int (a whole number)`},
		{"unknown flag", []string{"--config-dri", config}, nil, exitUsage, "flag provided but not defined: -config-dri"},
		{"stray argument", []string{"--config-dir", config, "serve"}, nil, exitUsage, `unexpected argument "serve"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("MESHLET_CONFIG_DIR", "")
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			code, out, errOut := runOnce(t, tc.args...)
			if code != tc.code || !strings.Contains(errOut, tc.want) {
				t.Errorf("run(%q): exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, tc.code, tc.want)
			}
			if out != "" {
				t.Errorf("run(%q) wrote %q to stdout", tc.args, out)
			}
			if strings.Contains(errOut, "WithConfigDir") {
				t.Errorf("the command names the library option: %q", errOut)
			}
			if tc.code == exitUsage && !strings.Contains(errOut, "--help") {
				t.Errorf("a usage error does not point to --help: %q", errOut)
			}
		})
	}
}

// Flags win over variables; the deprecated --drain-timeout and
// MESHLET_DRAIN_TIMEOUT set the drain-ACK timeout unless its new name is
// given, and are reported.
func TestFlagsEnvironmentAndDeprecatedNames(t *testing.T) {
	cases := []struct {
		name           string
		args           []string
		env            map[string]string
		drainAck       time.Duration
		warmup         time.Duration
		wantDeprecated []string
	}{
		{name: "defaults", drainAck: controlplane.DefaultDrainAckTimeout, warmup: controlplane.DefaultWarmup},
		{name: "variable", env: map[string]string{"MESHLET_WARMUP": "7s"}, drainAck: controlplane.DefaultDrainAckTimeout, warmup: 7 * time.Second},
		{name: "flag wins", args: []string{"--warmup", "8s"}, env: map[string]string{"MESHLET_WARMUP": "7s"},
			drainAck: controlplane.DefaultDrainAckTimeout, warmup: 8 * time.Second},
		{name: "new flag", args: []string{"--drain-ack-timeout", "3s"}, drainAck: 3 * time.Second, warmup: controlplane.DefaultWarmup},
		{name: "old flag", args: []string{"--drain-timeout", "4s"}, drainAck: 4 * time.Second, warmup: controlplane.DefaultWarmup,
			wantDeprecated: []string{"--drain-timeout is deprecated: use --drain-ack-timeout, which means the same"}},
		{name: "old variable", env: map[string]string{"MESHLET_DRAIN_TIMEOUT": "6s"}, drainAck: 6 * time.Second, warmup: controlplane.DefaultWarmup,
			wantDeprecated: []string{"MESHLET_DRAIN_TIMEOUT is deprecated: use MESHLET_DRAIN_ACK_TIMEOUT, which means the same"}},
		{name: "new variable wins over the old", env: map[string]string{"MESHLET_DRAIN_TIMEOUT": "6s", "MESHLET_DRAIN_ACK_TIMEOUT": "2s"},
			drainAck: 2 * time.Second, warmup: controlplane.DefaultWarmup,
			wantDeprecated: []string{"MESHLET_DRAIN_TIMEOUT is deprecated, and ignored: MESHLET_DRAIN_ACK_TIMEOUT, its new name, is set too"}},
		{name: "new flag wins over the old variable", args: []string{"--drain-ack-timeout", "3s"}, env: map[string]string{"MESHLET_DRAIN_TIMEOUT": "6s"},
			drainAck: 3 * time.Second, warmup: controlplane.DefaultWarmup},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := parseWithEnv(t, tc.args, tc.env, "MESHLET_WARMUP", "MESHLET_DRAIN_TIMEOUT", "MESHLET_DRAIN_ACK_TIMEOUT")
			if s.drainAck != tc.drainAck || s.warmup != tc.warmup {
				t.Errorf("drain-ack-timeout %v, warmup %v; want %v and %v", s.drainAck, s.warmup, tc.drainAck, tc.warmup)
			}
			if strings.Join(s.deprecated, "\n") != strings.Join(tc.wantDeprecated, "\n") {
				t.Errorf("deprecations %q, want %q", s.deprecated, tc.wantDeprecated)
			}
		})
	}
}

// Each debounce's two delays (config files, registry) have defaults,
// variables and flags.
func TestDebounceSettings(t *testing.T) {
	type delays struct{ after, max time.Duration }
	debounces := []struct {
		flag, env string // of After; Max's are the same with "max"
		defaults  delays
		got       func(*settings) delays
	}{
		{"debounce", "MESHLET_DEBOUNCE", delays{controlplane.DefaultDebounceAfter, controlplane.DefaultDebounceMax},
			func(s *settings) delays { return delays{s.debounceAfter, s.debounceMax} }},
		{"registry-debounce", "MESHLET_REGISTRY_DEBOUNCE", delays{controlplane.DefaultRegistryDebounceAfter, controlplane.DefaultRegistryDebounceMax},
			func(s *settings) delays { return delays{s.regDebounceAfter, s.regDebounceMax} }},
	}
	for _, d := range debounces {
		envAfter, envMax := d.env+"_AFTER", d.env+"_MAX"
		cases := []struct {
			name string
			args []string
			env  map[string]string
			want delays
		}{
			{name: "defaults", want: d.defaults},
			{name: "variables", env: map[string]string{envAfter: "5ms", envMax: "3s"}, want: delays{5 * time.Millisecond, 3 * time.Second}},
			{name: "flags win", args: []string{"--" + d.flag + "-after", "50ms", "--" + d.flag + "-max", "10s"},
				env: map[string]string{envAfter: "5ms", envMax: "3s"}, want: delays{50 * time.Millisecond, 10 * time.Second}},
		}
		for _, tc := range cases {
			t.Run(d.flag+"/"+tc.name, func(t *testing.T) {
				s := parseWithEnv(t, tc.args, tc.env, envAfter, envMax)
				if got := d.got(s); got != tc.want {
					t.Errorf("after %v, max %v; want %v and %v", got.after, got.max, tc.want.after, tc.want.max)
				}
			})
		}
	}
}

// parseWithEnv parses args as the command does, with the variables unset
// removed from the environment and env set, for the test.
func parseWithEnv(t *testing.T, args []string, env map[string]string, unset ...string) *settings {
	t.Helper()
	for _, k := range unset {
		unsetenv(t, k)
	}
	t.Setenv("MESHLET_CONFIG_DIR", "config")
	for k, v := range env {
		t.Setenv(k, v)
	}
	s, err := parse(args)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// unsetenv removes k from the environment for the test, and puts it back
// after.
func unsetenv(t *testing.T, k string) {
	t.Setenv(k, "") // for the restore
	os.Unsetenv(k)
}

// The command serves until its context ends, logs the deprecated names it
// was given, and exits 0.
func TestServesUntilStopped(t *testing.T) {
	config := meshtest.WriteConfig(t, map[string]string{"reviews.yaml": serviceEntry})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var out, errOut meshtest.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"--config-dir", config, "--state-dir", t.TempDir(), "--xds-address", "127.0.0.1:0",
			"--admin-address", "127.0.0.1:0", "--drain-timeout", "2s"}, &out, &errOut)
	}()
	serving := false
	defer func() {
		if !serving {
			t.Logf("stderr:\n%s", errOut.String())
		}
	}()
	meshtest.WaitUntil(t, 20*time.Second, "the control plane to serve", func() bool {
		select {
		case code := <-done:
			t.Fatalf("exited %d before serving", code)
		default:
		}
		return strings.Contains(errOut.String(), `msg="control plane serving"`)
	})
	serving = true
	if !strings.Contains(errOut.String(), `level=WARN msg="--drain-timeout is deprecated: use --drain-ack-timeout, which means the same"`) {
		t.Errorf("no deprecation line for --drain-timeout:\n%s", errOut.String())
	}
	cancel()
	select {
	case code := <-done:
		if code != exitOK {
			t.Errorf("exit %d after the context ended, want 0:\n%s", code, errOut.String())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("still running 20s after its context ended")
	}
	if out.String() != "" {
		t.Errorf("wrote %q to stdout; logs go to stderr", out.String())
	}
}

// The README's flags table names every flag and its variable.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table := flagSet(&settings{})
	for _, st := range table {
		if !bytes.Contains(readme, []byte("`--"+st.flag+"`")) {
			t.Errorf("README.md does not list --%s", st.flag)
		}
		if !bytes.Contains(readme, []byte("`"+st.env)) && !strings.HasPrefix(st.env, "MESHLET_MAX_") {
			t.Errorf("README.md does not list %s", st.env)
		}
	}
}
