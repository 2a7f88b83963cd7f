// Command meshlet-controlplane serves a directory of Istio YAML as xDS to
// meshlet services and gRPC-Go xDS clients, and keeps the registry of
// meshlet servers.
//
// Every flag has an environment equivalent, used when the flag is not
// given: --config-dir MESHLET_CONFIG_DIR, --xds-address MESHLET_XDS_ADDRESS,
// --admin-address MESHLET_ADMIN_ADDRESS, --registration-grace
// MESHLET_REGISTRATION_GRACE, --warmup MESHLET_WARMUP, --drain-timeout
// MESHLET_DRAIN_TIMEOUT, --log-level MESHLET_LOG_LEVEL, --trust-domain
// MESHLET_TRUST_DOMAIN, --root-namespace MESHLET_ROOT_NAMESPACE, --ca-dir
// MESHLET_CA_DIR, --ca-cert MESHLET_CA_CERT, --ca-key MESHLET_CA_KEY,
// --ca-tokens-file MESHLET_CA_TOKENS_FILE, --ca-insecure-dev
// MESHLET_CA_INSECURE_DEV=true, --svid-ttl MESHLET_SVID_TTL, --state-dir
// MESHLET_STATE_DIR, --ca-in-memory MESHLET_CA_IN_MEMORY=true,
// --serving-names MESHLET_SERVING_NAMES, --trust-bundle-file
// MESHLET_TRUST_BUNDLE_FILE, --trust-advertised-addresses
// MESHLET_TRUST_ADVERTISED_ADDRESSES=true, --plaintext-xds-address
// MESHLET_PLAINTEXT_XDS_ADDRESS, --insecure-plaintext-dev
// MESHLET_INSECURE_PLAINTEXT_DEV=true, and the limits --max-streams,
// --max-streams-per-connection, --max-names-per-request,
// --max-inbound-per-stream, --max-registrations-per-identity
// (MESHLET_MAX_...).
//
// The xDS port serves TLS with a certificate from the built-in CA, whose
// root is kept in <state dir>/ca/root-cert.pem: workloads in other
// processes trust the control plane with that file
// (MESHLET_CONTROL_PLANE_ROOTS).
package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/meshlet/meshlet/controlplane"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "meshlet-controlplane:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("meshlet-controlplane", flag.ContinueOnError)
	configDir := fs.String("config-dir", env("MESHLET_CONFIG_DIR", ""), "directory of Istio YAML to serve (required)")
	xdsAddr := fs.String("xds-address", env("MESHLET_XDS_ADDRESS", "127.0.0.1:15010"), "address of the xDS and registration gRPC port")
	adminAddr := fs.String("admin-address", env("MESHLET_ADMIN_ADDRESS", "127.0.0.1:15014"), "address of the admin HTTP port; empty turns it off")
	grace, err := envDuration("MESHLET_REGISTRATION_GRACE", 10*time.Second)
	if err != nil {
		return err
	}
	warmup, err := envDuration("MESHLET_WARMUP", 5*time.Second)
	if err != nil {
		return err
	}
	drain, err := envDuration("MESHLET_DRAIN_TIMEOUT", 5*time.Second)
	if err != nil {
		return err
	}
	fs.DurationVar(&grace, "registration-grace", grace, "how long an instance whose connection died stays registered")
	fs.DurationVar(&warmup, "warmup", warmup, "how long a restarted control plane withholds endpoints while servers register again")
	fs.DurationVar(&drain, "drain-timeout", drain, "how long a draining server waits for callers to move off")
	level := fs.String("log-level", env("MESHLET_LOG_LEVEL", "info"), "debug, info, warn or error")
	trustDomain := fs.String("trust-domain", env("MESHLET_TRUST_DOMAIN", "cluster.local"), "SPIFFE trust domain of the mesh")
	rootNS := fs.String("root-namespace", env("MESHLET_ROOT_NAMESPACE", "istio-system"), "namespace whose security policies apply mesh-wide")
	caDir := fs.String("ca-dir", env("MESHLET_CA_DIR", ""), "directory where the CA keeps the root it generates; empty keeps it in memory only")
	caCert := fs.String("ca-cert", env("MESHLET_CA_CERT", ""), "PEM file of the CA's signing certificate (instead of a generated root)")
	caKey := fs.String("ca-key", env("MESHLET_CA_KEY", ""), "PEM file of the CA's signing key")
	caTokens := fs.String("ca-tokens-file", env("MESHLET_CA_TOKENS_FILE", ""), "YAML file of per-workload tokens that authenticate signing requests")
	insecureDev := fs.Bool("ca-insecure-dev", env("MESHLET_CA_INSECURE_DEV", "") == "true", "sign any identity without a token: loopback demos only")
	svidTTL, err := envDuration("MESHLET_SVID_TTL", time.Hour)
	if err != nil {
		return err
	}
	fs.DurationVar(&svidTTL, "svid-ttl", svidTTL, "lifetime of the SVIDs the CA issues, and the most a CSR may ask for")
	stateDir := fs.String("state-dir", env("MESHLET_STATE_DIR", ""), "directory of what survives a restart (the CA root in ca/); default $XDG_STATE_HOME/meshlet or ~/.local/state/meshlet")
	caInMemory := fs.Bool("ca-in-memory", env("MESHLET_CA_IN_MEMORY", "") == "true", "keep a generated CA root in memory only: trust is lost at every restart")
	servingNames := fs.String("serving-names", env("MESHLET_SERVING_NAMES", ""), "comma-separated DNS names and IPs to add to the control plane's certificate")
	trustBundle := fs.String("trust-bundle-file", env("MESHLET_TRUST_BUNDLE_FILE", ""), "PEM file of more roots that client certificates may chain to (SPIRE's bundle)")
	trustAdvertised := fs.Bool("trust-advertised-addresses", env("MESHLET_TRUST_ADVERTISED_ADDRESSES", "") == "true", "believe registered addresses that differ from the connection's (NAT)")
	plainXDS := fs.String("plaintext-xds-address", env("MESHLET_PLAINTEXT_XDS_ADDRESS", ""), "address of a read-only plaintext xDS port for clients that cannot do TLS; empty: off")
	insecurePlain := fs.Bool("insecure-plaintext-dev", env("MESHLET_INSECURE_PLAINTEXT_DEV", "") == "true", "serve the main port in plaintext and believe clients' claims: loopback development only")
	var limits controlplane.Limits
	maxStreams := fs.Int("max-streams", envInt("MESHLET_MAX_STREAMS", 0), "most open xDS streams (0: 10000)")
	maxPerConn := fs.Int("max-streams-per-connection", envInt("MESHLET_MAX_STREAMS_PER_CONNECTION", 0), "most concurrent gRPC streams on one connection (0: 100)")
	maxNames := fs.Int("max-names-per-request", envInt("MESHLET_MAX_NAMES_PER_REQUEST", 0), "most resource names in one xDS request (0: 10000)")
	maxInbound := fs.Int("max-inbound-per-stream", envInt("MESHLET_MAX_INBOUND_PER_STREAM", 0), "most server Listener names one xDS stream asks for (0: 64)")
	maxRegs := fs.Int("max-registrations-per-identity", envInt("MESHLET_MAX_REGISTRATIONS_PER_IDENTITY", 0), "most instances one identity registers (0: 1000)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	limits = controlplane.Limits{Streams: *maxStreams, StreamsPerConnection: uint32(max(*maxPerConn, 0)), NamesPerRequest: *maxNames,
		InboundPerStream: *maxInbound, RegistrationsPerIdentity: *maxRegs}
	var bundle []*x509.Certificate
	if *trustBundle != "" {
		if bundle, err = readCerts(*trustBundle); err != nil {
			return fmt.Errorf("--trust-bundle-file: %w", err)
		}
	}
	var names []string
	for _, n := range strings.Split(*servingNames, ",") {
		if n = strings.TrimSpace(n); n != "" {
			names = append(names, n)
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*level)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cp, err := controlplane.Start(ctx,
		controlplane.WithConfigDir(*configDir),
		controlplane.WithXDSAddress(*xdsAddr),
		controlplane.WithAdminAddress(*adminAddr),
		controlplane.WithLogger(log),
		controlplane.WithRegistrationGrace(grace),
		controlplane.WithWarmup(warmup),
		controlplane.WithDrainAckTimeout(drain),
		controlplane.WithTrustDomain(*trustDomain),
		controlplane.WithRootNamespace(*rootNS),
		controlplane.WithCADir(*caDir),
		controlplane.WithCARoot(*caCert, *caKey),
		controlplane.WithCATokensFile(*caTokens),
		controlplane.WithCAInsecureDev(*insecureDev),
		controlplane.WithSVIDTTL(svidTTL),
		controlplane.WithStateDir(*stateDir),
		controlplane.WithCAInMemory(*caInMemory),
		controlplane.WithServingNames(names...),
		controlplane.WithTrustBundle(bundle...),
		controlplane.WithTrustAdvertisedAddresses(*trustAdvertised),
		controlplane.WithPlaintextXDSAddress(*plainXDS),
		controlplane.WithInsecurePlaintext(*insecurePlain),
		controlplane.WithLimits(limits),
	)
	if err != nil {
		return err
	}
	<-ctx.Done()
	log.Info("shutting down")
	return cp.Close()
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, ok := os.LookupEnv(name); ok {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []*x509.Certificate
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s: no PEM certificate in it", path)
	}
	return out, nil
}

func envDuration(name string, def time.Duration) (time.Duration, error) {
	v, ok := os.LookupEnv(name)
	if !ok {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}
