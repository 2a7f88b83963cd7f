//go:build xdsimport

package main

// What gRPC-Go's xDS path costs a program that links it and uses none of
// it: its init functions and its code.
import _ "google.golang.org/grpc/xds"
