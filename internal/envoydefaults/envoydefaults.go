// Package envoydefaults holds what Envoy's xDS resources mean when a field
// is left out, and the bounds gRPC-Go puts on them: the control plane
// leaves fields out or fills them in on that understanding, and meshlet's
// xDS client and balancer fill them in the same way. Each value is written
// here once.
package envoydefaults

import "time"

// Retries: the back-off of a retry policy without retry_back_off, and
// Envoy's cap of ten times the base interval.
const (
	RetryBaseInterval  = 25 * time.Millisecond
	RetryMaxFactor     = 10
	RetryMaxInterval   = RetryMaxFactor * RetryBaseInterval
	PreviousHostsTries = 5 // Istio's previous_hosts predicate: host_selection_retry_max_attempts
)

// Ring hash: Envoy's default ring sizes; MaxRingSize is also gRPC-Go's
// upper bound for either.
const (
	MinRingSize = 1024
	MaxRingSize = 8 * 1024 * 1024
)

// Least request: the number of random choices.
const ChoiceCount = 2

// Circuit breakers: the default thresholds' max_requests.
const MaxRequests = 1024

// Outlier detection, Envoy's defaults for an outlier_detection without
// the field.
const (
	OutlierInterval               = 10 * time.Second
	BaseEjectionTime              = 30 * time.Second
	MaxEjectionTime               = 300 * time.Second
	MaxEjectionPercent            = 10
	Consecutive5xx                = 5
	ConsecutiveGatewayFailure     = 5
	ConsecutiveLocalOriginFailure = 5
	// Enforcement percentages: consecutive 5xx and local-origin failures
	// are enforced by default; gateway failures, success rate and
	// failure percentage are not.
	EnforcingConsecutive5xx                = 100
	EnforcingConsecutiveGatewayFailure     = 0
	EnforcingConsecutiveLocalOriginFailure = 100
	EnforcingSuccessRate                   = 100
	EnforcingFailurePercentage             = 0
	SuccessRateMinimumHosts                = 5
	SuccessRateRequestVolume               = 100
	SuccessRateStdevFactor                 = 1900
	FailurePercentageThreshold             = 85
	FailurePercentageMinimumHosts          = 5
	FailurePercentageRequestVolume         = 50
)
