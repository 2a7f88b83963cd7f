package balancer_test

import (
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/meshlet/meshlet/balancer"
)

func Example() {
	b, err := balancer.New(balancer.Config{Policy: balancer.LeastRequest})
	if err != nil {
		log.Fatal(err)
	}
	err = b.Update([]balancer.Endpoint{
		{Address: "10.0.0.1:8080"},
		{Address: "10.0.0.2:8080"},
	})
	if err != nil {
		log.Fatal(err)
	}

	r, err := b.Pick(balancer.Request{})
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	// ... send the request to r.Endpoint.Address ...
	r.Done(balancer.DoneInfo{Latency: time.Since(start)})
	fmt.Println(r.Endpoint.Address == "10.0.0.1:8080" || r.Endpoint.Address == "10.0.0.2:8080")
	// Output: true
}

func ExampleHashString() {
	b, err := balancer.New(balancer.Config{Policy: balancer.RingHash})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Update([]balancer.Endpoint{
		{Address: "10.0.0.1:8080"}, {Address: "10.0.0.2:8080"}, {Address: "10.0.0.3:8080"},
	}); err != nil {
		log.Fatal(err)
	}
	// The key comes from a header, a cookie or the source address; the
	// same key goes to the same endpoint, on every client.
	for _, user := range []string{"alice", "bob", "carol", "dave", "alice"} {
		r, err := b.Pick(balancer.Request{Hash: balancer.HashString(user), HasHash: true})
		if err != nil {
			log.Fatal(err)
		}
		r.Done(balancer.DoneInfo{})
		fmt.Println(user, r.Endpoint.Address)
	}
	// Output:
	// alice 10.0.0.3:8080
	// bob 10.0.0.3:8080
	// carol 10.0.0.1:8080
	// dave 10.0.0.1:8080
	// alice 10.0.0.3:8080
}

func ExampleOutlierConfig() {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b, err := balancer.New(balancer.Config{
		Policy: balancer.RoundRobin,
		// Istio's defaults, but allow ejecting half of the endpoints.
		Outlier: &balancer.OutlierConfig{MaxEjectionPercent: 50},
		Now:     func() time.Time { return now },
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Update([]balancer.Endpoint{{Address: "10.0.0.1:8080"}, {Address: "10.0.0.2:8080"}}); err != nil {
		log.Fatal(err)
	}
	send := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			r, err := b.Pick(balancer.Request{})
			if err != nil {
				log.Fatal(err)
			}
			got[r.Endpoint.Address]++
			info := balancer.DoneInfo{}
			if r.Endpoint.Address == "10.0.0.2:8080" {
				info.Failure = balancer.FailureGateway // it answers 503
			}
			r.Done(info)
		}
		return got
	}
	send(10) // 5 consecutive 503s from 10.0.0.2
	for _, s := range b.Status() {
		if s.Ejected {
			fmt.Println(s.Endpoint.Address, "ejected for", s.EjectedUntil.Sub(now))
		}
	}
	fmt.Println(send(4))
	now = now.Add(30 * time.Second)
	fmt.Println(send(4))
	// Output:
	// 10.0.0.2:8080 ejected for 30s
	// map[10.0.0.1:8080:4]
	// map[10.0.0.1:8080:2 10.0.0.2:8080:2]
}

func ExampleBalancer_Pick_noEndpoints() {
	b, err := balancer.New(balancer.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := b.Update([]balancer.Endpoint{{Address: "10.0.0.1:8080", Unhealthy: true}}); err != nil {
		log.Fatal(err)
	}
	_, err = b.Pick(balancer.Request{})
	fmt.Println(errors.Is(err, balancer.ErrNoEndpoints))
	fmt.Println(err)
	// Output:
	// true
	// balancer: no endpoint available: 1 of 1 endpoints unhealthy, 0 ejected by outlier detection
}
