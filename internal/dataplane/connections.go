package dataplane

// The cluster's connection slots, for tcp.maxConnections (Envoy's
// max_connections): both transports take one per connection they open to
// the cluster's endpoints, so the limit is the cluster's, not a pool's.

// StartConnection takes a slot for a connection to one of the cluster's
// endpoints, or refuses with a *RefusedError wrapping the
// *policy.LimitError. EndConnection gives it back when the connection
// closes.
func (cl *Cluster) StartConnection() error {
	if err := cl.gate.StartConnection(); err != nil {
		return &RefusedError{Cluster: cl.name, Err: err}
	}
	return nil
}

// EndConnection gives back a slot StartConnection took.
func (cl *Cluster) EndConnection() { cl.gate.EndConnection() }

// ConnectionsFull returns the *RefusedError StartConnection would return
// now, without taking a slot, or nil.
func (cl *Cluster) ConnectionsFull() error {
	if err := cl.gate.ConnectionsFull(); err != nil {
		return &RefusedError{Cluster: cl.name, Err: err}
	}
	return nil
}

// Connections returns the connections open to the cluster's endpoints,
// for tests and the admin page.
func (cl *Cluster) Connections() int64 { return cl.gate.Connections() }
