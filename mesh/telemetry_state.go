package mesh

import "github.com/meshlet/meshlet/telemetry"

// telemetryState is the mesh's state for its telemetry's metrics, read
// at each collection: meshlet's xDS client and the clusters its data
// plane calls. Before the xDS client connects it is all zero. It reads
// atomics and takes the data plane's lock briefly, never waiting on the
// network.
func (m *Mesh) telemetryState() telemetry.MeshState {
	select {
	case <-m.xds.ready:
	default:
		return telemetry.MeshState{}
	}
	rc, core := m.xds.rc, m.xds.core
	if m.xds.err != nil || rc == nil {
		return telemetry.MeshState{}
	}
	connects, _ := rc.Connects()
	st := telemetry.MeshState{XDSConnected: rc.Connection().Up, XDSReconnects: max(connects, 1) - 1}
	for _, ty := range rc.Counts() {
		st.XDSTypes = append(st.XDSTypes, telemetry.XDSTypeCounts{Type: ty.Type, Updates: ty.Updates, NACKs: ty.NACKs})
	}
	if core != nil {
		for _, c := range core.Counts() {
			st.Clusters = append(st.Clusters, telemetry.ClusterState{Name: c.Name, Ejections: c.Ejections, BreakerOpens: c.BreakerOpens, BreakerState: c.BreakerState})
		}
	}
	return st
}
