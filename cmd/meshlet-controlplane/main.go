// Command meshlet-controlplane serves a directory of Istio YAML as xDS to
// meshlet services and gRPC-Go xDS clients, and keeps the registry of
// meshlet servers.
//
// Every flag has an environment equivalent, used when the flag is not
// given: --config-dir MESHLET_CONFIG_DIR, --xds-address MESHLET_XDS_ADDRESS,
// --admin-address MESHLET_ADMIN_ADDRESS, --registration-grace
// MESHLET_REGISTRATION_GRACE, --warmup MESHLET_WARMUP, --drain-timeout
// MESHLET_DRAIN_TIMEOUT, --log-level MESHLET_LOG_LEVEL.
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
