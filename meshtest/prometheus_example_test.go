package meshtest_test

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/meshlet/meshlet/meshtest"
)

// In a test of your own service: a real Prometheus scrapes the service's
// metrics handler on loopback, and the test asks PromQL for a counter.
func ExampleStartPrometheus() {
	var t *testing.T                                 // the test's own t
	target := httptest.NewServer(promhttp.Handler()) // the service's metrics handler
	defer target.Close()
	p := meshtest.StartPrometheus(t, strings.TrimPrefix(target.URL, "http://"))

	// ... the test sends 10 requests to the service ...
	p.WaitQuery(t, 30*time.Second, `sum(http_server_request_duration_seconds_count)`, func(s []meshtest.Sample) bool {
		return len(s) == 1 && s[0].Value == 10
	})
}
