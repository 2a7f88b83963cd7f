package dataplane

import "github.com/meshlet/meshlet/policy"

// Connections returns how long the cluster's connections live, as last
// known; the zero value for the transports' defaults.
func (cl *Cluster) Connections() policy.ConnLifetime { return cl.state.Load().conns }
