package model

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// CircuitBreakerAnnotation is meshlet's extension of a DestinationRule
// for a breaker per destination, which Istio has no field for:
// "consecutiveErrors=5,openFor=30s" opens the breaker of every cluster of
// the rule after 5 failed requests in a row, fails its calls fast for
// 30s, then lets one probe through. Either setting may be left out for
// its default (5, 30s). gRPC clients on gRPC-Go's own xDS path have no
// such breaker and ignore it.
const CircuitBreakerAnnotation = "meshlet.io/circuit-breaker"

// CircuitBreaker is the breaker a CircuitBreakerAnnotation sets.
type CircuitBreaker struct {
	ConsecutiveErrors uint32
	OpenFor           time.Duration
}

// ParseCircuitBreaker reads the value of CircuitBreakerAnnotation.
func ParseCircuitBreaker(v string) (CircuitBreaker, error) {
	cb := CircuitBreaker{ConsecutiveErrors: 5, OpenFor: 30 * time.Second}
	if strings.TrimSpace(v) == "" {
		return cb, fmt.Errorf("is empty (write settings such as %q)", "consecutiveErrors=5,openFor=30s")
	}
	for _, kv := range strings.Split(v, ",") {
		k, val, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return cb, fmt.Errorf("%q is not a setting=value pair (write settings such as %q)", kv, "consecutiveErrors=5,openFor=30s")
		}
		switch k {
		case "consecutiveErrors":
			n, err := strconv.ParseUint(val, 10, 32)
			if err != nil || n == 0 {
				return cb, fmt.Errorf("consecutiveErrors: must be a whole number from 1, got %q", val)
			}
			cb.ConsecutiveErrors = uint32(n)
		case "openFor":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return cb, fmt.Errorf("openFor: must be a duration greater than 0 such as 30s, got %q", val)
			}
			cb.OpenFor = d
		default:
			return cb, fmt.Errorf("unknown setting %q (meshlet reads consecutiveErrors and openFor)", k)
		}
	}
	return cb, nil
}

// CircuitBreaker returns the breaker the rule's CircuitBreakerAnnotation
// sets, and whether it sets one. The config package has validated it.
func (dr *DestinationRule) CircuitBreaker() (CircuitBreaker, bool) {
	v, ok := dr.Annotations[CircuitBreakerAnnotation]
	if !ok {
		return CircuitBreaker{}, false
	}
	cb, err := ParseCircuitBreaker(v)
	return cb, err == nil
}
