package mesh

// EnforceHTTPListener applies a server Listener to one request as a mesh
// HTTP server does, for tests of Listener settings that meshlet's control
// plane does not send.
var EnforceHTTPListener = (&HTTPServer{}).enforce // no rate limits: an empty InboundSet

// OpenTransports is how many HTTP transports m holds open for its Close.
func OpenTransports(m *Mesh) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.transports)
}

// ClusterConnections is how many connections m holds open to cluster, as
// its tcp.maxConnections counts them.
func ClusterConnections(m *Mesh, cluster string) int64 {
	return m.xds.core.Cluster(cluster).Connections()
}
