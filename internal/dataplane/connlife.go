package dataplane

import "github.com/meshlet/meshlet/policy"

// ConnLifetime returns how long the cluster's connections live, as last
// known; the zero value for the transports' defaults.
func (cl *Cluster) ConnLifetime() policy.ConnLifetime { return cl.state.Load().conns }
