// Command meshlet-controlplane serves a directory of Istio YAML as xDS to
// meshlet services and gRPC-Go xDS clients, and keeps the registry of
// meshlet servers.
//
//	meshlet-controlplane --config-dir examples/config
//
// Every flag has an environment variable, used when the flag is not given;
// --help lists each with its variable and default, and --version prints
// the build. It exits 0 when stopped by SIGINT or SIGTERM, 1 when it
// cannot start or stop cleanly, and 2 for a bad flag or variable.
//
// The xDS port serves TLS with a certificate from the built-in CA, whose
// root is kept in <state dir>/ca/root-cert.pem: workloads in other
// processes trust the control plane with that file
// (MESHLET_CONTROL_PLANE_ROOTS).
//
// For debugging only, MESHLET_PPROF_ADDR=127.0.0.1:<port> serves
// net/http/pprof on that loopback address (no flag; off by default).
package main

import (
	"cmp"
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/internal/certfile"
)

const name = "meshlet-controlplane"

// Exit codes.
const (
	exitOK    = 0
	exitError = 1 // could not start, or stop cleanly
	exitUsage = 2 // a bad flag or environment variable, as the flag package's
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// settings are the values of the flags.
type settings struct {
	configDir, xdsAddr, adminAddr      string
	grace, warmup, drainAck            time.Duration
	debounceAfter, debounceMax         time.Duration
	regDebounceAfter, regDebounceMax   time.Duration
	logLevel                           string
	level                              slog.Level // of logLevel
	trustDomain, rootNamespace         string
	caDir, caCert, caKey, caTokens     string
	caInsecureDev, caInMemory          bool
	svidTTL                            time.Duration
	stateDir, servingNames             string
	trustBundle                        string
	trustAdvertised                    bool
	plaintextXDS                       string
	insecurePlaintext                  bool
	maxStreams, maxStreamsPerConn      int
	maxNames, maxInbound, maxRegsPerID int
	maxSendBytes                       int
	sendTimeout                        time.Duration

	help, version bool     // what to do instead of serving
	deprecated    []string // deprecated names used, to log once there is a logger
}

// setting is one flag and its environment variable.
type setting struct {
	flag, env string
	bind      func(fs *flag.FlagSet, name, usage string) // registers the flag with its default
	usage     string
	// def, if set, is shown as the default instead of the flag's own: a
	// default that an empty value stands for.
	def string
	// replacedBy names the flag that replaces this deprecated one.
	replacedBy string
}

// table is every flag, its environment variable and its default, in the
// order --help lists them. Defaults come from package controlplane.
func (s *settings) table() []setting {
	return []setting{
		{flag: "config-dir", env: "MESHLET_CONFIG_DIR", bind: str(&s.configDir, ""), def: "required",
			usage: "directory of Istio YAML to serve, e.g. examples/config; watched, and reloaded when it changes"},
		{flag: "xds-address", env: "MESHLET_XDS_ADDRESS", bind: str(&s.xdsAddr, controlplane.DefaultXDSAddress),
			usage: "address of the xDS, registration and CA gRPC port (TLS)"},
		{flag: "admin-address", env: "MESHLET_ADMIN_ADDRESS", bind: str(&s.adminAddr, controlplane.DefaultAdminAddress),
			usage: "address of the admin HTTP port (/healthz, /readyz, /metrics, /debug/config, /debug/clients, /debug/describe, /debug/config_dump; what meshctl reads); empty turns it off"},
		{flag: "registration-grace", env: "MESHLET_REGISTRATION_GRACE", bind: dur(&s.grace, controlplane.DefaultRegistrationGrace),
			usage: "how long an instance whose connection died stays registered"},
		{flag: "warmup", env: "MESHLET_WARMUP", bind: dur(&s.warmup, controlplane.DefaultWarmup),
			usage: "how long a restarted control plane withholds endpoints while servers register again"},
		{flag: "drain-ack-timeout", env: "MESHLET_DRAIN_ACK_TIMEOUT", bind: dur(&s.drainAck, controlplane.DefaultDrainAckTimeout),
			usage: "how long a draining server's \"drained\" answer waits for every caller to ACK endpoints without it; not the server's own drain time (mesh.WithDrainTimeout)"},
		{flag: "debounce-after", env: "MESHLET_DEBOUNCE_AFTER", bind: dur(&s.debounceAfter, controlplane.DefaultDebounceAfter),
			usage: "the longest that config files must be quiet after a change before the control plane reloads them (like istiod's PILOT_DEBOUNCE_AFTER); a lone change, or writes close together, waits a quarter of it, a burst with wider gaps twice its longest gap, up to this"},
		{flag: "debounce-max", env: "MESHLET_DEBOUNCE_MAX", bind: dur(&s.debounceMax, controlplane.DefaultDebounceMax),
			usage: "the longest a config change waits for files to be quiet before it is reloaded anyway (like istiod's PILOT_DEBOUNCE_MAX)"},
		{flag: "registry-debounce-after", env: "MESHLET_REGISTRY_DEBOUNCE_AFTER", bind: dur(&s.regDebounceAfter, controlplane.DefaultRegistryDebounceAfter),
			usage: "the longest quiet time after a registration, state change or deregistration before the registry's endpoints are built and pushed; a lone change, or changes close together, waits a quarter of it, a burst with wider gaps twice its longest gap, up to this"},
		{flag: "registry-debounce-max", env: "MESHLET_REGISTRY_DEBOUNCE_MAX", bind: dur(&s.regDebounceMax, controlplane.DefaultRegistryDebounceMax),
			usage: "the longest a registry change waits for quiet before it is built and pushed anyway"},
		{flag: "log-level", env: "MESHLET_LOG_LEVEL", bind: str(&s.logLevel, "info"),
			usage: "debug, info, warn or error"},
		{flag: "trust-domain", env: "MESHLET_TRUST_DOMAIN", bind: str(&s.trustDomain, controlplane.DefaultTrustDomain),
			usage: "SPIFFE trust domain of the mesh"},
		{flag: "root-namespace", env: "MESHLET_ROOT_NAMESPACE", bind: str(&s.rootNamespace, controlplane.DefaultRootNamespace),
			usage: "namespace whose security policies apply mesh-wide"},
		{flag: "state-dir", env: "MESHLET_STATE_DIR", bind: str(&s.stateDir, ""), def: defaultStateDir(),
			usage: "directory of what survives a restart: the CA root, in ca/"},
		{flag: "ca-dir", env: "MESHLET_CA_DIR", bind: str(&s.caDir, ""), def: "<state dir>/ca",
			usage: "directory where the CA keeps the root it generates"},
		{flag: "ca-in-memory", env: "MESHLET_CA_IN_MEMORY", bind: boolean(&s.caInMemory),
			usage: "keep a generated CA root in memory only: trust is lost at every restart"},
		{flag: "ca-cert", env: "MESHLET_CA_CERT", bind: str(&s.caCert, ""), def: "none: the CA generates a root",
			usage: "PEM file of the CA's signing certificate, instead of a generated root (with --ca-key)"},
		{flag: "ca-key", env: "MESHLET_CA_KEY", bind: str(&s.caKey, ""),
			usage: "PEM file of the CA's signing key (with --ca-cert)"},
		{flag: "ca-tokens-file", env: "MESHLET_CA_TOKENS_FILE", bind: str(&s.caTokens, ""),
			usage: "YAML file of per-workload tokens that authenticate first signing requests"},
		{flag: "ca-insecure-dev", env: "MESHLET_CA_INSECURE_DEV", bind: boolean(&s.caInsecureDev),
			usage: "sign any identity without a token: loopback demos only"},
		{flag: "svid-ttl", env: "MESHLET_SVID_TTL", bind: dur(&s.svidTTL, controlplane.DefaultSVIDTTL),
			usage: "lifetime of the SVIDs the CA issues, and the most a CSR may ask for"},
		{flag: "serving-names", env: "MESHLET_SERVING_NAMES", bind: str(&s.servingNames, ""), def: "none besides localhost, loopback, the host name and the xDS address's IP",
			usage: "comma-separated DNS names and IPs to add to the control plane's certificate"},
		{flag: "trust-bundle-file", env: "MESHLET_TRUST_BUNDLE_FILE", bind: str(&s.trustBundle, ""),
			usage: "PEM file of more roots that client certificates may chain to (SPIRE's bundle)"},
		{flag: "trust-advertised-addresses", env: "MESHLET_TRUST_ADVERTISED_ADDRESSES", bind: boolean(&s.trustAdvertised),
			usage: "believe registered addresses that differ from the connection's (NAT)"},
		{flag: "plaintext-xds-address", env: "MESHLET_PLAINTEXT_XDS_ADDRESS", bind: str(&s.plaintextXDS, ""), def: "none: off",
			usage: "address of a read-only plaintext xDS port for clients that cannot do TLS"},
		{flag: "insecure-plaintext-dev", env: "MESHLET_INSECURE_PLAINTEXT_DEV", bind: boolean(&s.insecurePlaintext),
			usage: "serve the main port in plaintext and believe clients' claims: loopback development only"},
		{flag: "max-streams", env: "MESHLET_MAX_STREAMS", bind: integer(&s.maxStreams, controlplane.DefaultStreams),
			usage: "most open xDS streams"},
		{flag: "max-streams-per-connection", env: "MESHLET_MAX_STREAMS_PER_CONNECTION", bind: integer(&s.maxStreamsPerConn, controlplane.DefaultStreamsPerConnection),
			usage: "most concurrent gRPC streams on one connection"},
		{flag: "max-names-per-request", env: "MESHLET_MAX_NAMES_PER_REQUEST", bind: integer(&s.maxNames, controlplane.DefaultNamesPerRequest),
			usage: "most resource names in one xDS request"},
		{flag: "max-inbound-per-stream", env: "MESHLET_MAX_INBOUND_PER_STREAM", bind: integer(&s.maxInbound, controlplane.DefaultInboundPerStream),
			usage: "most server Listener names one xDS stream asks for"},
		{flag: "max-registrations-per-identity", env: "MESHLET_MAX_REGISTRATIONS_PER_IDENTITY", bind: integer(&s.maxRegsPerID, controlplane.DefaultRegistrationsPerIdentity),
			usage: "most instances one identity registers"},
		{flag: "max-send-bytes", env: "MESHLET_MAX_SEND_BYTES", bind: integer(&s.maxSendBytes, controlplane.DefaultSendBytes),
			usage: "most bytes of encoded xDS responses held for all clients together until written (slow readers hold theirs); a push waits its turn past it; -1: no bound"},
		{flag: "send-timeout", env: "MESHLET_SEND_TIMEOUT", bind: dur(&s.sendTimeout, controlplane.DefaultSendTimeout),
			usage: "how long an xDS response may wait for a client that does not read before its stream is closed (like istiod's PILOT_XDS_SEND_TIMEOUT); -1s: never"},

		// Deprecated names, kept so that existing setups still start.
		{flag: "drain-timeout", env: "MESHLET_DRAIN_TIMEOUT", bind: dur(&s.drainAck, controlplane.DefaultDrainAckTimeout), replacedBy: "drain-ack-timeout",
			usage: "the former name of --drain-ack-timeout, which means the same"},
	}
}

func str(p *string, def string) func(*flag.FlagSet, string, string) {
	return func(fs *flag.FlagSet, name, usage string) { fs.StringVar(p, name, def, usage) }
}

func dur(p *time.Duration, def time.Duration) func(*flag.FlagSet, string, string) {
	return func(fs *flag.FlagSet, name, usage string) { fs.DurationVar(p, name, def, usage) }
}

func boolean(p *bool) func(*flag.FlagSet, string, string) {
	return func(fs *flag.FlagSet, name, usage string) { fs.BoolVar(p, name, false, usage) }
}

func integer(p *int, def int) func(*flag.FlagSet, string, string) {
	return func(fs *flag.FlagSet, name, usage string) { fs.IntVar(p, name, def, usage) }
}

func defaultStateDir() string {
	const rule = "$XDG_STATE_HOME/meshlet, else ~/.local/state/meshlet"
	if d, err := controlplane.DefaultStateDir(); err == nil {
		return rule + " (here " + d + ")"
	}
	return rule
}

// flagSet registers the flags of table's settings into s.
func flagSet(s *settings) (*flag.FlagSet, []setting) {
	table := s.table()
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // run prints errors and help itself
	fs.Usage = func() {}
	for _, st := range table {
		st.bind(fs, st.flag, st.usage)
	}
	return fs, table
}

// parse reads the flags from args, and from the environment those that
// args does not give. Its errors are a bad flag or variable (exit code 2).
func parse(args []string) (*settings, error) {
	s := &settings{}
	fs, table := flagSet(s)
	fs.BoolVar(&s.version, "version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			s.help = true
			return s, nil
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every setting is a flag (--config-dir DIR)", fs.Arg(0))
	}
	if s.version {
		return s, nil
	}

	byFlag := map[string]setting{}
	for _, st := range table {
		byFlag[st.flag] = st
	}
	// A deprecated flag and its replacement set one value: given either
	// on the command line, neither's environment variable applies.
	group := func(st setting) string { return cmp.Or(st.replacedBy, st.flag) }
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		st, ok := byFlag[f.Name]
		if !ok {
			return
		}
		given[group(st)] = true
		if st.replacedBy != "" {
			s.deprecated = append(s.deprecated, fmt.Sprintf("--%s is deprecated: use --%s, which means the same", st.flag, st.replacedBy))
		}
	})
	for _, st := range table {
		v, ok := os.LookupEnv(st.env)
		if !ok || given[group(st)] {
			continue
		}
		if st.replacedBy != "" {
			newEnv := byFlag[st.replacedBy].env
			if _, ok := os.LookupEnv(newEnv); ok {
				s.deprecated = append(s.deprecated, fmt.Sprintf("%s is deprecated, and ignored: %s, its new name, is set too", st.env, newEnv))
				continue
			}
			s.deprecated = append(s.deprecated, fmt.Sprintf("%s is deprecated: use %s, which means the same", st.env, newEnv))
		}
		if err := fs.Set(st.flag, v); err != nil {
			typ, _ := flag.UnquoteUsage(fs.Lookup(st.flag))
			return nil, fmt.Errorf("%s=%q is not a valid %s (%s)", st.env, v, cmp.Or(typ, "bool"), example(typ))
		}
	}
	if s.configDir == "" {
		return nil, errors.New("--config-dir (or MESHLET_CONFIG_DIR) is required: a directory of Istio YAML, e.g. examples/config")
	}
	if err := s.level.UnmarshalText([]byte(s.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level (or MESHLET_LOG_LEVEL) %q is not debug, info, warn or error", s.logLevel)
	}
	return s, nil
}

// example says what a value of a flag type looks like.
func example(typ string) string {
	switch typ {
	case "duration":
		return "e.g. 500ms, 5s or 1h"
	case "int":
		return "a whole number"
	case "":
		return "true or false"
	}
	return typ
}

// usage writes --help: every flag with its environment variable and
// default.
func usage(w io.Writer) {
	fs, table := flagSet(&settings{})
	fmt.Fprintf(w, "Usage: %s --config-dir DIR [flags]\n\n", name)
	fmt.Fprintf(w, "Serves a directory of Istio YAML as xDS to meshlet services and gRPC xDS\n")
	fmt.Fprintf(w, "clients, and keeps the registry of meshlet servers. Each flag can be set by\n")
	fmt.Fprintf(w, "its environment variable instead; a flag given on the command line wins.\n\n")
	deprecatedHeader := false
	for _, st := range table {
		f := fs.Lookup(st.flag)
		typ, text := flag.UnquoteUsage(f)
		if st.replacedBy != "" && !deprecatedHeader {
			fmt.Fprintf(w, "\nDeprecated names, which still work and log that they are deprecated:\n\n")
			deprecatedHeader = true
		}
		flagText, env := "--"+st.flag, st.env
		if typ == "" { // a bool: given alone on the command line
			env += "=true"
		} else {
			flagText += " " + typ
		}
		fmt.Fprintf(w, "  %s\n", flagText)
		fmt.Fprintf(w, "        %s\n", text)
		if st.replacedBy != "" {
			fmt.Fprintf(w, "        env %s; use --%s\n", env, st.replacedBy)
			continue
		}
		def := st.def
		if def == "" {
			def = cmp.Or(f.DefValue, "none")
			if typ == "duration" {
				def = shortDuration(def)
			}
		}
		if def != "required" {
			def = "default " + def
		}
		fmt.Fprintf(w, "        env %s; %s\n", env, def)
	}
	fmt.Fprintf(w, "\n  --version\n        print the version and build information, and exit\n")
	fmt.Fprintf(w, "  --help\n        print this help, and exit\n")
}

// shortDuration drops a duration's zero minutes and seconds: 1h, not
// 1h0m0s.
func shortDuration(s string) string {
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// versionText describes the build from bi: the module's version, the VCS
// revision it was built from when known, and the Go toolchain.
func versionText(bi *debug.BuildInfo) string {
	if bi == nil {
		return fmt.Sprintf("%s (no build information)\ngo %s %s/%s\n", name, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s\n", name, cmp.Or(bi.Main.Version, "(devel)"))
	if bi.Main.Path != "" {
		fmt.Fprintf(&b, "module %s\n", bi.Main.Path)
	}
	vcs := map[string]string{}
	for _, kv := range bi.Settings {
		vcs[kv.Key] = kv.Value
	}
	if rev := vcs["vcs.revision"]; rev != "" {
		var notes []string
		if t := vcs["vcs.time"]; t != "" {
			notes = append(notes, t)
		}
		if vcs["vcs.modified"] == "true" {
			notes = append(notes, "with uncommitted changes")
		}
		fmt.Fprintf(&b, "revision %s", rev)
		if len(notes) > 0 {
			fmt.Fprintf(&b, " (%s)", strings.Join(notes, ", "))
		}
		b.WriteString("\n")
	}
	fmt.Fprintf(&b, "go %s %s/%s\n", cmp.Or(bi.GoVersion, runtime.Version()),
		cmp.Or(vcs["GOOS"], runtime.GOOS), cmp.Or(vcs["GOARCH"], runtime.GOARCH))
	return b.String()
}

// run runs the command until ctx ends and returns its exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, err := parse(args)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "%s: %v\nRun %s --help for every flag.\n", name, err, name)
		return exitUsage
	case s.help:
		usage(stdout)
		return exitOK
	case s.version:
		bi, _ := debug.ReadBuildInfo()
		fmt.Fprint(stdout, versionText(bi))
		return exitOK
	}
	if err := serve(ctx, s, stderr); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return exitError
	}
	return exitOK
}

// serve starts the control plane and stops it when ctx ends.
func serve(ctx context.Context, s *settings, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: s.level}))
	defer startPprof(log)()
	for _, d := range s.deprecated {
		log.Warn(d)
	}
	var bundle []*x509.Certificate
	if s.trustBundle != "" {
		var err error
		if bundle, err = certfile.Read(s.trustBundle); err != nil {
			return fmt.Errorf("--trust-bundle-file: %w", err)
		}
	}
	var names []string
	for _, n := range strings.Split(s.servingNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	cp, err := controlplane.Start(ctx,
		controlplane.WithConfigDir(s.configDir),
		controlplane.WithXDSAddress(s.xdsAddr),
		controlplane.WithAdminAddress(s.adminAddr),
		controlplane.WithLogger(log),
		controlplane.WithRegistrationGrace(s.grace),
		controlplane.WithWarmup(s.warmup),
		controlplane.WithDrainAckTimeout(s.drainAck),
		controlplane.WithDebounce(controlplane.Debounce{After: s.debounceAfter, Max: s.debounceMax}),
		controlplane.WithRegistryDebounce(controlplane.Debounce{After: s.regDebounceAfter, Max: s.regDebounceMax}),
		controlplane.WithTrustDomain(s.trustDomain),
		controlplane.WithRootNamespace(s.rootNamespace),
		controlplane.WithCADir(s.caDir),
		controlplane.WithCARoot(s.caCert, s.caKey),
		controlplane.WithCATokensFile(s.caTokens),
		controlplane.WithCAInsecureDev(s.caInsecureDev),
		controlplane.WithSVIDTTL(s.svidTTL),
		controlplane.WithStateDir(s.stateDir),
		controlplane.WithCAInMemory(s.caInMemory),
		controlplane.WithServingNames(names...),
		controlplane.WithTrustBundle(bundle...),
		controlplane.WithTrustAdvertisedAddresses(s.trustAdvertised),
		controlplane.WithPlaintextXDSAddress(s.plaintextXDS),
		controlplane.WithInsecurePlaintext(s.insecurePlaintext),
		controlplane.WithLimits(controlplane.Limits{
			Streams:                  s.maxStreams,
			StreamsPerConnection:     uint32(max(s.maxStreamsPerConn, 0)),
			NamesPerRequest:          s.maxNames,
			InboundPerStream:         s.maxInbound,
			RegistrationsPerIdentity: s.maxRegsPerID,
			SendBytes:                int64(s.maxSendBytes),
			SendTimeout:              s.sendTimeout,
		}),
	)
	if err != nil {
		return err
	}
	<-ctx.Done()
	return cp.Close() // which logs that it stops
}
