//go:build linux

package main

// This file holds the one place where the benchmark connects to the control
// plane's gRPC port (registrations and xDS). Today the control channel is
// plaintext; when it becomes TLS/mTLS, only these two functions change:
// the credentials, and the client certificate the control plane will ask for.

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// controlPlaneDialOptions are the options of every connection to the
// control plane: each registration's and the xDS watcher's.
func controlPlaneDialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
	}
}

// dialControlPlane opens the connection of one registering server: every
// meshlet server process has its own connection to the control plane, so
// every registration gets one (and, once the channel is TLS, its own
// handshake). addr is an IP:port; passthrough keeps gRPC from any name
// lookup.
func dialControlPlane(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient("passthrough:///"+addr, controlPlaneDialOptions()...)
}
