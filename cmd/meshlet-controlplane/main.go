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
// MESHLET_CA_INSECURE_DEV=true, --svid-ttl MESHLET_SVID_TTL.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
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
	fs.DurationVar(&svidTTL, "svid-ttl", svidTTL, "lifetime of the SVIDs the CA issues")
	if err := fs.Parse(args); err != nil {
		return err
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
		controlplane.WithDrainTimeout(drain),
		controlplane.WithTrustDomain(*trustDomain),
		controlplane.WithRootNamespace(*rootNS),
		controlplane.WithCADir(*caDir),
		controlplane.WithCARoot(*caCert, *caKey),
		controlplane.WithCATokensFile(*caTokens),
		controlplane.WithCAInsecureDev(*insecureDev),
		controlplane.WithSVIDTTL(svidTTL),
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
