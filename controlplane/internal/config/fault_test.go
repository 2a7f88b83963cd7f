package config_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// ratingsRule defines the subset that Bookinfo's ratings samples route
// to, as its destination-rule-all.yaml does.
const ratingsRule = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  subsets: [{name: v1, labels: {version: v1}}]
`

// TestFaultBookinfo loads Istio's Bookinfo fault-injection samples
// unchanged, and checks what each injects.
func TestFaultBookinfo(t *testing.T) {
	tests := []struct {
		file                          string
		wantDelay                     string
		wantDelayPercent, wantPercent float64
		wantHTTP                      int32
	}{
		{"fault-injection-details-v1.yaml", "", 0, 100, 555},
		// The deprecated abort.percent is read as percentage.value.
		{"virtual-service-ratings-test-abort.yaml", "", 0, 100, 500},
		{"virtual-service-ratings-test-delay.yaml", "7s", 100, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", "fault", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := config.Parse(map[string][]byte{tt.file: b, "ratings-rule.yaml": []byte(ratingsRule)})
			if err != nil {
				t.Fatalf("refused:\n%v", err)
			}
			f := cfg.VirtualServices[0].Spec.GetHttp()[0].GetFault()
			if tt.wantDelay != "" {
				d := f.GetDelay()
				//nolint:staticcheck // the sample sets the deprecated percent.
				if got := d.GetFixedDelay().AsDuration().String(); got != tt.wantDelay || float64(d.GetPercent()) != tt.wantDelayPercent {
					t.Errorf("delay = %s %d%%, want %s %v%%", got, d.GetPercent(), tt.wantDelay, tt.wantDelayPercent)
				}
			}
			if tt.wantHTTP != 0 {
				a := f.GetAbort()
				if a.GetHttpStatus() != tt.wantHTTP || a.GetPercentage().GetValue() != tt.wantPercent {
					t.Errorf("abort = %d %v%%, want %d %v%%", a.GetHttpStatus(), a.GetPercentage().GetValue(), tt.wantHTTP, tt.wantPercent)
				}
			}
		})
	}
}

// TestFaultRefused pins the errors for faults that could not do what
// they say.
func TestFaultRefused(t *testing.T) {
	const at = "ratings.yaml: VirtualService default/ratings: spec.http[0].fault"
	tests := []struct {
		name, fault string
		want        []string
	}{
		{"empty", `{}`, []string{at + ": sets neither delay nor abort, so it would do nothing (set one, or remove fault)"}},
		{"delay over 100", `{delay: {fixedDelay: 1s, percentage: {value: 100.5}}}`, []string{at + ".delay.percentage.value: must be between 0 and 100, got 100.5"}},
		{"abort negative", `{abort: {httpStatus: 503, percentage: {value: -1}}}`, []string{at + ".abort.percentage.value: must be between 0 and 100, got -1"}},
		{"percent over 100", `{delay: {fixedDelay: 1s, percent: 120}}`, []string{at + ".delay.percent: must be between 0 and 100, got 120"}},
		{"percent and percentage", `{delay: {fixedDelay: 1s, percent: 10, percentage: {value: 10}}}`, []string{at + ".delay.percent: percent and percentage cannot both be set (use percentage: percent is deprecated)"}},
		{"abort percent and percentage", `{abort: {httpStatus: 503, percent: 10, percentage: {value: 10}}}`, []string{at + ".abort.percent: percent and percentage cannot both be set (use percentage: percent is deprecated)"}},
		{"no delay share", `{delay: {fixedDelay: 1s}}`, []string{at + ".delay.percentage: left out, so no request would be delayed (set percentage.value: 100 delays every request)"}},
		{"no fixedDelay", `{delay: {percentage: {value: 10}}}`, []string{at + ".delay.fixedDelay: required: how long to delay requests"}},
		{"zero fixedDelay", `{delay: {fixedDelay: 0s, percentage: {value: 10}}}`, []string{at + ".delay.fixedDelay: must be greater than 0, got 0s"}},
		{"abort without status", `{abort: {percentage: {value: 10}}}`, []string{at + ".abort: sets neither httpStatus nor grpcStatus (set the status to answer with)"}},
		{"abort status out of range", `{abort: {httpStatus: 600, percentage: {value: 10}}}`, []string{at + ".abort.httpStatus: must be between 200 and 599, got 600"}},
		{"unknown grpc status", `{abort: {grpcStatus: OK, percentage: {value: 10}}}`, []string{at + `.abort.grpcStatus: unknown gRPC status "OK" (expected one of ABORTED, ALREADY_EXISTS, CANCELLED, DATA_LOSS, DEADLINE_EXCEEDED, FAILED_PRECONDITION, INTERNAL, INVALID_ARGUMENT, NOT_FOUND, OUT_OF_RANGE, PERMISSION_DENIED, RESOURCE_EXHAUSTED, UNAUTHENTICATED, UNAVAILABLE, UNIMPLEMENTED, UNKNOWN)`}},
		{"no abort share", `{abort: {grpcStatus: UNAVAILABLE}}`, []string{at + ".abort.percentage: left out, so no request would be aborted (set percentage.value: 100 aborts every request)"}},
		{"unsupported field", `{abort: {http2Error: CANCEL, percentage: {value: 10}}}`, []string{at + ".abort.http2Error: out of scope for meshlet: Istio does not implement it, and a gRPC client and an HTTP/1.1 client could not inject it alike (use httpStatus or grpcStatus)"}},
		{"unknown field", `{abort: {httpStatus: 503, percentage: {value: 10}, headerAbort: {}}}`, []string{at + `.abort.headerAbort: unknown field`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\nspec:\n  hosts: [ratings]\n  http:\n  - fault: " + tt.fault + "\n    route: [{destination: {host: ratings}}]\n"
			_, err := config.Parse(map[string][]byte{"ratings.yaml": []byte(doc)})
			var got []string
			for _, fe := range fieldErrors(t, err) {
				got = append(got, fe.Error())
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("errors (-want +got):\n%s", diff)
			}
		})
	}
}

// fault is the fault config of the first route of a RouteConfiguration.
func (b *built) fault(name string) *faultv3.HTTPFault {
	b.t.Helper()
	cfg := b.routes(name)[0].GetTypedPerFilterConfig()[wellknown.Fault]
	if cfg == nil {
		b.t.Fatalf("%s: no %s in typed_per_filter_config", name, wellknown.Fault)
	}
	f := &faultv3.HTTPFault{}
	if err := cfg.UnmarshalTo(f); err != nil {
		b.t.Fatal(err)
	}
	return f
}

// text is m in prototext, on one line with single spaces.
func text(m proto.Message) string {
	return strings.Join(strings.Fields(prototext.MarshalOptions{}.Format(m)), " ")
}
