package config

import (
	"fmt"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// validateConnectionPool checks the limits meshlet enforces as Istio's
// validation does: none negative, and a percentage for the retry budget.
// A 0 limit means Istio's default, unlimited.
func validateConnectionPool(tp *networking.TrafficPolicy, path string, report reportFunc) {
	if h := tp.GetConnectionPool().GetHttp(); h != nil {
		at := path + ".connectionPool.http"
		if h.Http2MaxRequests < 0 {
			report.add(at+".http2MaxRequests", "must be greater than 0, got %d (leave it out for no limit)", h.Http2MaxRequests)
		}
		if h.MaxRetries < 0 {
			report.add(at+".maxRetries", "must be 0 or more, got %d (0 or leaving it out means no limit)", h.MaxRetries)
		}
		validateConnectionLifetime(h, at, report)
		if h.Http2MaxRequests == 0 && h.MaxRetries == 0 && h.Http1MaxPendingRequests == 0 && h.MaxRequestsPerConnection == 0 && h.IdleTimeout == nil && h.MaxConcurrentStreams == 0 {
			report.add(at, "sets no limit: 0 means Istio's default, unlimited (set http2MaxRequests, maxRetries, idleTimeout or maxRequestsPerConnection, or remove it)")
		}
	}
	if tcp := tp.GetConnectionPool().GetTcp(); tcp != nil && tcp.MaxConnections < 0 {
		report.add(path+".connectionPool.tcp.maxConnections", "must be greater than 0, got %d (leave it out for no limit)", tcp.MaxConnections)
	}
	if rb := tp.GetRetryBudget(); rb != nil {
		if p := rb.GetPercent(); p != nil && (p.GetValue() < 0 || p.GetValue() > 100) {
			report.add(path+".retryBudget.percent", "must be between 0 and 100, got %v (leave it out for the default, 20)", p.GetValue())
		}
	}
}

// validateCircuitBreakerAnnotation checks meshlet's breaker extension
// (model.CircuitBreakerAnnotation).
func validateCircuitBreakerAnnotation(annotations map[string]string, report reportFunc) {
	v, ok := annotations[model.CircuitBreakerAnnotation]
	if !ok {
		return
	}
	if _, err := model.ParseCircuitBreaker(v); err != nil {
		report.add(fmt.Sprintf("metadata.annotations[%q]", model.CircuitBreakerAnnotation), "%v", err)
	}
}
