// Package registry is the control plane's in-memory service registry. It
// holds the instances that meshlet servers register over a stream that lives
// as long as their connection.
package registry
