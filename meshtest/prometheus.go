package meshtest

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Prometheus is a real Prometheus server started by [StartPrometheus]. It
// scrapes its targets every second and answers PromQL at [Prometheus.URL].
//
// Its methods may be called from several goroutines.
type Prometheus struct {
	url    string
	client *http.Client
	proc   *toolProcess
}

// Sample is one element of a PromQL instant vector: the series' labels
// (with __name__ when the result keeps it) and its value.
type Sample struct {
	Metric map[string]string
	Value  float64
}

// String formats s as Prometheus does: name{label="value", ...} value.
func (s Sample) String() string {
	keys := make([]string, 0, len(s.Metric))
	for k := range s.Metric {
		if k != "__name__" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(s.Metric["__name__"])
	b.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s=%q", k, s.Metric[k])
	}
	fmt.Fprintf(&b, "} %g", s.Value)
	return b.String()
}

// PrometheusBinary returns the path of the prometheus program that
// StartPrometheus runs: $MESHLET_PROMETHEUS_BIN/prometheus when that is
// set, else prometheus on PATH (where scripts/install-prometheus puts
// Debian's package).
func PrometheusBinary() (string, error) {
	return toolBinary("prometheus", "MESHLET_PROMETHEUS_BIN", false,
		"run scripts/install-prometheus from the meshlet repository as root (it installs Debian's prometheus package with apt-get), or set MESHLET_PROMETHEUS_BIN to a directory that holds a prometheus 2.x binary")
}

// StartPrometheus starts a Prometheus server (Debian's 2.42, found by
// [PrometheusBinary]) that scrapes /metrics on each target ("host:port",
// plain HTTP) every second, keeps its data in a temporary directory and
// serves its API on a free 127.0.0.1 port. It returns when the server is
// ready; its first scrape follows within a second. The test fails, and
// does not skip, when prometheus is missing. The server is stopped when
// the test ends.
//
// Every target is in job "meshtest", and its "instance" label is the
// target as given.
func StartPrometheus(t testing.TB, targets ...string) *Prometheus {
	t.Helper()
	bin, err := PrometheusBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	quoted := make([]string, len(targets))
	for i, target := range targets {
		quoted[i] = strconv.Quote(target) // a JSON string is a YAML string
	}
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: meshtest
    metrics_path: /metrics
    static_configs:
      - targets: [%s]
`, strings.Join(quoted, ", "))
	configPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
		t.Fatalf("meshtest: prometheus config: %v", err)
	}
	logLevel := "warn"
	if os.Getenv("MESHLET_TEST_LOG") != "" {
		logLevel = "debug"
	}

	p := &Prometheus{client: &http.Client{
		// No idle connections: they would outlive the test as goroutines.
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}}
	start := time.Now()
	startToolOnFreePorts(t, "start prometheus", 1, func(ports []int) error {
		addr := fmt.Sprintf("127.0.0.1:%d", ports[0])
		proc, err := startTool("prometheus", bin, dir,
			"--config.file="+configPath,
			"--storage.tsdb.path="+filepath.Join(dir, "data"),
			"--web.listen-address="+addr,
			"--log.level="+logLevel,
		)
		if err != nil {
			return err
		}
		if err := proc.waitReady(t.Context(), p.client, "http://"+addr+"/-/ready"); err != nil {
			_ = proc.stop()
			return fmt.Errorf("%w%s", err, proc.logTail())
		}
		p.url, p.proc = "http://"+addr, proc
		return nil
	})
	t.Cleanup(func() {
		if err := p.proc.stop(); err != nil {
			t.Errorf("meshtest: stop prometheus: %v%s", err, p.proc.logTail())
		}
	})
	t.Logf("meshtest: prometheus ready at %s after %v, scraping %v", p.url, time.Since(start).Round(time.Millisecond), targets)
	return p
}

// URL returns the server's base URL, "http://127.0.0.1:<port>".
func (p *Prometheus) URL() string { return p.url }

// Query evaluates promql as an instant query now. A scalar result comes
// back as one Sample without labels; a range vector or string result is an
// error.
func (p *Prometheus) Query(ctx context.Context, promql string) ([]Sample, error) {
	var data struct {
		ResultType string          `json:"resultType"`
		Result     json.RawMessage `json:"result"`
	}
	if err := p.get(ctx, "/api/v1/query?"+url.Values{"query": {promql}}.Encode(), &data); err != nil {
		return nil, fmt.Errorf("meshtest: prometheus query %q: %w", promql, err)
	}
	switch data.ResultType {
	case "vector":
		var vector []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"`
		}
		if err := json.Unmarshal(data.Result, &vector); err != nil {
			return nil, fmt.Errorf("meshtest: prometheus query %q: %w", promql, err)
		}
		samples := make([]Sample, len(vector))
		for i, v := range vector {
			value, err := sampleValue(v.Value)
			if err != nil {
				return nil, fmt.Errorf("meshtest: prometheus query %q: %w", promql, err)
			}
			samples[i] = Sample{Metric: v.Metric, Value: value}
		}
		return samples, nil
	case "scalar":
		var scalar [2]any
		if err := json.Unmarshal(data.Result, &scalar); err != nil {
			return nil, fmt.Errorf("meshtest: prometheus query %q: %w", promql, err)
		}
		value, err := sampleValue(scalar)
		if err != nil {
			return nil, fmt.Errorf("meshtest: prometheus query %q: %w", promql, err)
		}
		return []Sample{{Metric: map[string]string{}, Value: value}}, nil
	default:
		return nil, fmt.Errorf("meshtest: prometheus query %q: result type %q, want an instant vector or a scalar", promql, data.ResultType)
	}
}

// sampleValue reads the value of a [<unix time>, "<value>"] pair.
func sampleValue(pair [2]any) (float64, error) {
	s, ok := pair[1].(string)
	if !ok {
		return 0, fmt.Errorf("sample value %v is not a string", pair[1])
	}
	return strconv.ParseFloat(s, 64)
}

// WaitQuery evaluates promql every 100ms until cond holds for its result,
// and returns that result. It fails the test, with the last result or
// error and the health of the scrape targets, if cond does not hold within
// timeout. Allow a few seconds: each target is scraped once a second.
func (p *Prometheus) WaitQuery(t testing.TB, timeout time.Duration, promql string, cond func([]Sample) bool) []Sample {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		samples, err := p.Query(t.Context(), promql)
		if err == nil && cond(samples) {
			return samples
		}
		if !time.Now().Before(deadline) {
			last := fmt.Sprint(samples)
			if err != nil {
				last = err.Error()
			}
			t.Fatalf("meshtest: prometheus query %q: condition not met after %v; last result: %s; targets: %s",
				promql, timeout, last, p.targetHealth(t.Context()))
		}
		time.Sleep(toolPollInterval)
	}
}

// targetHealth describes each scrape target's state, for failure messages.
func (p *Prometheus) targetHealth(ctx context.Context) string {
	var data struct {
		ActiveTargets []struct {
			ScrapeURL string `json:"scrapeUrl"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		} `json:"activeTargets"`
	}
	if err := p.get(ctx, "/api/v1/targets", &data); err != nil {
		return err.Error()
	}
	var parts []string
	for _, target := range data.ActiveTargets {
		s := target.ScrapeURL + " " + target.Health
		if target.LastError != "" {
			s += " (" + target.LastError + ")"
		}
		parts = append(parts, s)
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

// get GETs path from the API and decodes the "data" of its answer.
func (p *Prometheus) get(ctx context.Context, path string, data any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+path, nil)
	if err != nil {
		return err
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	var answer struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("%s: %s: %.200s", resp.Status, err, body)
	}
	if answer.Status != "success" {
		return fmt.Errorf("%s: %s", resp.Status, answer.Error)
	}
	return json.Unmarshal(answer.Data, data)
}
