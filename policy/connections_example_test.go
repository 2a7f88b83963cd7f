package policy_test

import (
	"fmt"

	"github.com/meshlet/meshlet/policy"
)

// A destination allows 2 connections open; a third is not made until one
// of them closes.
func ExampleGate_StartConnection() {
	var g policy.Gate
	g.SetLimits(&policy.Limits{MaxRequests: policy.Unlimited, MaxRetries: policy.Unlimited, MaxConnections: 2})
	g.StartConnection()
	g.StartConnection()
	fmt.Println(g.StartConnection())
	g.EndConnection() // one closed
	fmt.Println(g.StartConnection())
	// Output:
	// circuit breaker open: maxConnections 2
	// <nil>
}
