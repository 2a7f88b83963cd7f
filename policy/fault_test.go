package policy_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/policy"
)

// counter returns draws 0, 1, 2, ... modulo max: every value once per
// max draws, so shares come out exact.
func counter() func(uint32) uint32 {
	var i uint32
	return func(max uint32) uint32 {
		v := i % max
		i++
		return v
	}
}

func TestFaultDecideShares(t *testing.T) {
	tests := []struct {
		name              string
		fault             *policy.Fault
		wantDelay, wantAb int // of 2,000,000 draws each
	}{
		{"nil", nil, 0, 0},
		{"zero", &policy.Fault{}, 0, 0},
		{"delay 10%", &policy.Fault{Delay: time.Second, DelayPerMillion: 100_000}, 100_000, 0},
		{"abort 20%", &policy.Fault{AbortPerMillion: 200_000, Abort: policy.Abort{HTTPStatus: 503}}, 0, 200_000},
		{"both all", &policy.Fault{Delay: time.Millisecond, DelayPerMillion: policy.PerMillion, AbortPerMillion: policy.PerMillion}, 1_000_000, 1_000_000},
		{"0.1%", &policy.Fault{Delay: time.Second, DelayPerMillion: 1000}, 1000, 0},
		{"delay without duration", &policy.Fault{DelayPerMillion: policy.PerMillion}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Separate counters for delay and abort draws would need to
			// know the order; one request draws for the delay first.
			delays, aborts := 0, 0
			n := counter()
			for range policy.PerMillion {
				d := tt.fault.Decide(n)
				if d.Delay > 0 {
					delays++
				}
				if d.Abort {
					aborts++
				}
			}
			if delays != tt.wantDelay || aborts != tt.wantAb {
				t.Errorf("delays, aborts = %d, %d; want %d, %d", delays, aborts, tt.wantDelay, tt.wantAb)
			}
		})
	}
}

func TestFaultDecideRandom(t *testing.T) {
	f := &policy.Fault{Delay: time.Second, DelayPerMillion: 100_000, AbortPerMillion: 200_000}
	r := rand.New(rand.NewPCG(1, 2))
	const n = 100_000
	delays, aborts, both := 0, 0, 0
	for range n {
		d := f.Decide(r.Uint32N)
		if d.Delay > 0 {
			delays++
		}
		if d.Abort {
			aborts++
		}
		if d.Delay > 0 && d.Abort {
			both++
		}
	}
	check := func(what string, got int, want float64) {
		if share := float64(got) / n; share < want-0.01 || share > want+0.01 {
			t.Errorf("%s share = %.4f, want %.2f ±0.01", what, share, want)
		}
	}
	check("delay", delays, 0.10)
	check("abort", aborts, 0.20)
	check("delay and abort (drawn apart)", both, 0.02)
}

func TestAbortGRPC(t *testing.T) {
	tests := []struct {
		abort policy.Abort
		want  codes.Code
	}{
		{policy.Abort{IsGRPC: true, GRPCStatus: codes.Unavailable}, codes.Unavailable},
		{policy.Abort{IsGRPC: true, GRPCStatus: codes.NotFound}, codes.NotFound},
		{policy.Abort{HTTPStatus: 400}, codes.Internal},
		{policy.Abort{HTTPStatus: 401}, codes.Unauthenticated},
		{policy.Abort{HTTPStatus: 403}, codes.PermissionDenied},
		{policy.Abort{HTTPStatus: 404}, codes.Unimplemented},
		{policy.Abort{HTTPStatus: 429}, codes.Unavailable},
		{policy.Abort{HTTPStatus: 503}, codes.Unavailable},
		{policy.Abort{HTTPStatus: 500}, codes.Unknown},
		{policy.Abort{HTTPStatus: 555}, codes.Unknown},
	}
	for _, tt := range tests {
		if got := tt.abort.GRPC(); got != tt.want {
			t.Errorf("%+v.GRPC() = %v, want %v", tt.abort, got, tt.want)
		}
	}
}

// BenchmarkFaultDecide is the cost a configured fault adds to a request
// it does not hit: two draws and two comparisons, no allocation.
func BenchmarkFaultDecide(b *testing.B) {
	f := &policy.Fault{Delay: time.Second, DelayPerMillion: 1, Abort: policy.Abort{HTTPStatus: 503}, AbortPerMillion: 1}
	b.ReportAllocs()
	var hit int
	for b.Loop() {
		if d := f.Decide(rand.Uint32N); d.Abort || d.Delay > 0 {
			hit++
		}
	}
	_ = hit
}

// A fault that delays every request by 7s and aborts half of them with
// 503, decided with a fixed draw for the example.
func ExampleFault_Decide() {
	f := &policy.Fault{
		Delay:           7 * time.Second,
		DelayPerMillion: policy.PerMillion,
		Abort:           policy.Abort{HTTPStatus: 503},
		AbortPerMillion: policy.PerMillion / 2,
	}
	low := func(uint32) uint32 { return 0 }
	high := func(max uint32) uint32 { return max - 1 }
	fmt.Println(f.Decide(low), f.Abort.GRPC())
	fmt.Println(f.Decide(high))
	// Output:
	// {7s true} Unavailable
	// {7s false}
}
