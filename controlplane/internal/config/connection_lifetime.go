package config

import (
	networking "istio.io/api/networking/v1alpha3"
)

// validateConnectionLifetime checks idleTimeout and
// maxRequestsPerConnection as Istio's validation does: a duration of at
// least 1ms, and no negative count (0 means no limit).
func validateConnectionLifetime(h *networking.ConnectionPoolSettings_HTTPSettings, at string, report reportFunc) {
	if d := h.GetIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration().Milliseconds() < 1 {
			report.add(at+".idleTimeout", "must be at least 1ms, got %v (leave it out to keep idle connections for the client's default)", d.AsDuration())
		}
	}
	if h.MaxRequestsPerConnection < 0 {
		report.add(at+".maxRequestsPerConnection", "must be 0 or more, got %d (0 or leaving it out means no limit)", h.MaxRequestsPerConnection)
	}
}
