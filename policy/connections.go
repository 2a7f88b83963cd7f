package policy

// StartConnection takes a slot for one connection to the destination, or
// refuses with a *LimitError if MaxConnections are open: Envoy's
// cx_open overflow, which fails the request that needed the connection.
// EndConnection gives it back when the connection closes.
func (g *Gate) StartConnection() error {
	n := g.conns.Add(1)
	if l := g.limits.Load(); l != nil && n > int64(l.MaxConnections) {
		g.conns.Add(-1)
		return g.connectionLimit(l)
	}
	return nil
}

// EndConnection gives back a slot StartConnection took.
func (g *Gate) EndConnection() { g.conns.Add(-1) }

// ConnectionsFull returns a *LimitError if MaxConnections are open now,
// without taking a slot; nil otherwise. It does not allocate unless full.
func (g *Gate) ConnectionsFull() error {
	if l := g.limits.Load(); l != nil && g.conns.Load() >= int64(l.MaxConnections) {
		return g.connectionLimit(l)
	}
	return nil
}

func (g *Gate) connectionLimit(l *Limits) error {
	return &LimitError{Limit: "maxConnections", Max: l.MaxConnections}
}

// Connections returns the connections open, for tests and the admin page.
func (g *Gate) Connections() int64 { return g.conns.Load() }
