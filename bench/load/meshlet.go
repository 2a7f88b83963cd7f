//go:build linux

package main

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/mesh"
)

// servicePort is the port callers name: http://greeter:8080/.
const servicePort = 8080

// identities are an in-process control plane and two workloads of it,
// the server (service greeter) and the client (service client). The
// direct variant uses their SVIDs; the meshlet variant, the workloads.
type identities struct {
	cp             *controlplane.Server
	server, client *mesh.Mesh
}

// quiet logs errors only, to stderr: a broken run says why, a good one
// prints nothing.
var quiet = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

// startIdentities starts a control plane on loopback with an empty config
// (the greeter service comes from its registration) and a CA that gives
// each workload its SVID for its token, and joins it twice.
func startIdentities(ctx context.Context, dir string) (*identities, error) {
	cfg := filepath.Join(dir, "config")
	if err := os.MkdirAll(cfg, 0o755); err != nil {
		return nil, err
	}
	serverToken, clientToken := rand.Text(), rand.Text()
	cp, err := controlplane.Start(ctx,
		controlplane.WithConfigDir(cfg),
		controlplane.WithStateDir(filepath.Join(dir, "state")),
		controlplane.WithXDSAddress("127.0.0.1:0"),
		controlplane.WithAdminAddress("127.0.0.1:0"),
		controlplane.WithCAToken(serverToken, controlplane.Identity{Namespace: "default", ServiceAccount: "greeter"}),
		controlplane.WithCAToken(clientToken, controlplane.Identity{Namespace: "default", ServiceAccount: "client"}),
		controlplane.WithLogger(quiet))
	if err != nil {
		return nil, fmt.Errorf("control plane: %w", err)
	}
	ids := &identities{cp: cp}
	join := func(service, token string) (*mesh.Mesh, error) {
		return mesh.New(ctx, mesh.WithService(service), mesh.WithControlPlane(cp.XDSAddr()), mesh.WithCAToken(token), mesh.WithLogger(quiet))
	}
	if ids.server, err = join("greeter", serverToken); err == nil {
		ids.client, err = join("client", clientToken)
	}
	if err != nil {
		ids.close()
		return nil, fmt.Errorf("join the mesh: %w", err)
	}
	return ids, nil
}

func (ids *identities) close() {
	for _, m := range []*mesh.Mesh{ids.client, ids.server} {
		if m != nil {
			m.Close()
		}
	}
	ids.cp.Close()
}

// startMeshlet serves the handler with a mesh HTTP server of the greeter
// and calls it with the client workload's mesh HTTP client, which refuses
// hosts outside the mesh: nothing is looked up.
func startMeshlet(ctx context.Context, c config, ids *identities) (*variant, error) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	lis := &countingListener{Listener: inner}
	srv, err := ids.server.NewHTTPServer(handler(c.size), mesh.WithServicePort(servicePort))
	if err != nil {
		lis.Close()
		return nil, err
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	stop := func() {
		srv.Stop()
		<-done
	}
	client, err := ids.client.HTTPClient(ctx, mesh.WithUnknownHosts(mesh.Refuse))
	if err != nil {
		stop()
		return nil, err
	}
	v := &variant{
		name:   "meshlet",
		client: client,
		url:    fmt.Sprintf("http://greeter:%d/", servicePort),
		peer:   "mtls",
		conns:  lis.n.Load,
		close: func() {
			client.Transport.(*mesh.HTTPTransport).Close()
			stop()
		},
	}
	if err := v.probe(ctx, c); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

// keepAlive is the transport of the plain clients: as many idle
// connections per host as meshlet's (64), so each worker keeps its own.
func keepAlive() *http.Transport {
	return &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64}
}
