package meshtest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Jaeger is a real Jaeger (the v2 all-in-one) started by [StartJaeger]: it
// receives spans over OTLP, keeps them in memory, and answers its query
// API, through which [Jaeger.Trace] reads them back.
//
// Its methods may be called from several goroutines.
type Jaeger struct {
	otlpGRPC string // host:port
	otlpHTTP string // host:port
	query    string // base URL of the query API
	client   *http.Client
	proc     *toolProcess
}

// Span is a span as Jaeger stored it.
type Span struct {
	TraceID string // 32 hex digits
	SpanID  string // 16 hex digits
	// ParentSpanID is the span ID of the parent (a CHILD_OF reference),
	// "" for a root span.
	ParentSpanID string
	Operation    string // the span's name
	Service      string // the resource's service.name
	Start        time.Time
	Duration     time.Duration
	// Attributes are the span's attributes as text: strings as they are,
	// numbers in decimal, booleans as true or false. Jaeger adds some of
	// its own: span.kind ("client", "server", ...), otel.status_code and
	// error when the status is an error, otel.scope.name.
	Attributes map[string]string
	// Resource holds the resource's attributes other than service.name,
	// as text.
	Resource map[string]string
}

// JaegerBinary returns the path of the jaeger program that StartJaeger
// runs: $MESHLET_JAEGER_BIN/jaeger when that is set, else .tools/bin/jaeger
// in the root of the module that holds the working directory (where
// scripts/install-jaeger builds it), else jaeger on PATH.
func JaegerBinary() (string, error) {
	return toolBinary("jaeger", "MESHLET_JAEGER_BIN", true,
		"run scripts/install-jaeger from the meshlet repository (it builds Jaeger v1.76.0 into .tools/bin, a few minutes the first time), or set MESHLET_JAEGER_BIN to a directory that holds a jaeger v2 binary")
}

// jaegerConfig is the collector configuration for StartJaeger: OTLP in,
// memory storage, the query API, a health check, and nothing else (no
// other receivers, no self-telemetry port, no self-tracing), every port on
// 127.0.0.1.
const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: %[1]s

extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:%[2]d
      status:
        enabled: true
        path: /status
  jaeger_query:
    enable_tracing: false
    storage:
      traces: memory
    http:
      endpoint: 127.0.0.1:%[3]d
    grpc:
      endpoint: 127.0.0.1:%[4]d
  jaeger_storage:
    backends:
      memory:
        memory:
          max_traces: 100000

receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:%[5]d
      http:
        endpoint: 127.0.0.1:%[6]d

exporters:
  jaeger_storage_exporter:
    trace_storage: memory
`

// StartJaeger starts Jaeger v2 (built from v1.76.0, found by
// [JaegerBinary]) with OTLP gRPC and HTTP receivers, in-memory storage and
// the query API, each on a free 127.0.0.1 port, and returns when it is
// healthy. The test fails, and does not skip, when the binary is missing.
// Jaeger is stopped when the test ends.
//
// Send spans to [Jaeger.OTLPGRPCAddr] (otlptracegrpc.WithEndpoint, with
// WithInsecure) or [Jaeger.OTLPHTTPURL] (otlptracehttp.WithEndpointURL),
// and read them back with [Jaeger.WaitTrace].
func StartJaeger(t testing.TB) *Jaeger {
	t.Helper()
	bin, err := JaegerBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	logLevel := "warn"
	if os.Getenv("MESHLET_TEST_LOG") != "" {
		logLevel = "debug"
	}
	j := &Jaeger{client: &http.Client{
		// No idle connections: they would outlive the test as goroutines.
		Transport: &http.Transport{DisableKeepAlives: true},
		Timeout:   10 * time.Second,
	}}
	start := time.Now()
	startToolOnFreePorts(t, "start jaeger", 5, func(ports []int) error {
		health, queryHTTP, queryGRPC, otlpGRPC, otlpHTTP := ports[0], ports[1], ports[2], ports[3], ports[4]
		configPath := filepath.Join(dir, "jaeger.yaml")
		config := fmt.Sprintf(jaegerConfig, logLevel, health, queryHTTP, queryGRPC, otlpGRPC, otlpHTTP)
		if err := os.WriteFile(configPath, []byte(config), 0o600); err != nil {
			return err
		}
		proc, err := startTool("jaeger", bin, dir, "--config", configPath)
		if err != nil {
			return err
		}
		query := fmt.Sprintf("http://127.0.0.1:%d", queryHTTP)
		// Healthy means every component started; the query API then answers.
		for _, url := range []string{fmt.Sprintf("http://127.0.0.1:%d/status", health), query + "/api/services"} {
			if err := proc.waitReady(t.Context(), j.client, url); err != nil {
				_ = proc.stop()
				return fmt.Errorf("%w%s", err, proc.logTail())
			}
		}
		j.proc, j.query = proc, query
		j.otlpGRPC = fmt.Sprintf("127.0.0.1:%d", otlpGRPC)
		j.otlpHTTP = fmt.Sprintf("127.0.0.1:%d", otlpHTTP)
		return nil
	})
	t.Cleanup(func() {
		if err := j.proc.stop(); err != nil {
			t.Errorf("meshtest: stop jaeger: %v%s", err, j.proc.logTail())
		}
	})
	t.Logf("meshtest: jaeger healthy after %v: OTLP gRPC %s, OTLP HTTP %s, query %s",
		time.Since(start).Round(time.Millisecond), j.otlpGRPC, j.OTLPHTTPURL(), j.query)
	return j
}

// OTLPGRPCAddr returns the OTLP/gRPC receiver's address, "127.0.0.1:<port>"
// (plaintext).
func (j *Jaeger) OTLPGRPCAddr() string { return j.otlpGRPC }

// OTLPHTTPURL returns the OTLP/HTTP receiver's traces URL,
// "http://127.0.0.1:<port>/v1/traces", for otlptracehttp.WithEndpointURL
// (which takes the path as it is) or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT.
func (j *Jaeger) OTLPHTTPURL() string { return "http://" + j.otlpHTTP + "/v1/traces" }

// QueryURL returns the base URL of Jaeger's query API and UI,
// "http://127.0.0.1:<port>".
func (j *Jaeger) QueryURL() string { return j.query }

// Trace returns the spans Jaeger holds for traceID (32 hex digits, as
// trace.TraceID.String gives it), ordered by start time. A trace Jaeger
// does not have yet is no spans and no error.
func (j *Jaeger) Trace(ctx context.Context, traceID string) ([]Span, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.query+"/api/traces/"+traceID, nil)
	if err != nil {
		return nil, fmt.Errorf("meshtest: jaeger trace %s: %w", traceID, err)
	}
	resp, err := j.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("meshtest: jaeger trace %s: %w", traceID, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("meshtest: jaeger trace %s: %w", traceID, err)
	}
	if resp.StatusCode == http.StatusNotFound {
		return nil, nil
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("meshtest: jaeger trace %s: %s: %.300s", traceID, resp.Status, body)
	}
	spans, err := decodeJaegerTraces(body)
	if err != nil {
		return nil, fmt.Errorf("meshtest: jaeger trace %s: %w", traceID, err)
	}
	return spans, nil
}

// WaitTrace polls Jaeger every 100ms until it holds at least wantSpans
// spans of traceID, and returns them all (see [Jaeger.Trace]). It fails the
// test if that takes more than 30 seconds. Flush the exporter first
// (TracerProvider.ForceFlush or Shutdown): a batching exporter may hold
// spans for seconds.
func (j *Jaeger) WaitTrace(t testing.TB, traceID string, wantSpans int) []Span {
	t.Helper()
	const timeout = 30 * time.Second
	deadline := time.Now().Add(timeout)
	for {
		spans, err := j.Trace(t.Context(), traceID)
		if err == nil && len(spans) >= wantSpans {
			return spans
		}
		if !time.Now().Before(deadline) {
			last := fmt.Sprintf("%d spans", len(spans))
			if err != nil {
				last = err.Error()
			}
			t.Fatalf("meshtest: jaeger has not %d spans of trace %s after %v; last: %s%s",
				wantSpans, traceID, timeout, last, j.proc.logTail())
		}
		time.Sleep(toolPollInterval)
	}
}

// decodeJaegerTraces reads the query API's answer ({"data": [trace...]},
// Jaeger's UI model) into spans.
func decodeJaegerTraces(body []byte) ([]Span, error) {
	type keyValue struct {
		Key   string `json:"key"`
		Value any    `json:"value"`
	}
	var answer struct {
		Data []struct {
			Spans []struct {
				TraceID       string `json:"traceID"`
				SpanID        string `json:"spanID"`
				OperationName string `json:"operationName"`
				References    []struct {
					RefType string `json:"refType"`
					SpanID  string `json:"spanID"`
				} `json:"references"`
				StartTime int64      `json:"startTime"` // µs since the epoch
				Duration  int64      `json:"duration"`  // µs
				Tags      []keyValue `json:"tags"`
				ProcessID string     `json:"processID"`
			} `json:"spans"`
			Processes map[string]struct {
				ServiceName string     `json:"serviceName"`
				Tags        []keyValue `json:"tags"`
			} `json:"processes"`
		} `json:"data"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber() // int64 attributes exactly
	if err := dec.Decode(&answer); err != nil {
		return nil, err
	}
	text := func(kvs []keyValue) map[string]string {
		m := make(map[string]string, len(kvs))
		for _, kv := range kvs {
			switch v := kv.Value.(type) {
			case string:
				m[kv.Key] = v
			case json.Number:
				m[kv.Key] = v.String()
			case bool:
				m[kv.Key] = strconv.FormatBool(v)
			default:
				m[kv.Key] = fmt.Sprint(v)
			}
		}
		return m
	}
	var spans []Span
	for _, trace := range answer.Data {
		for _, s := range trace.Spans {
			process := trace.Processes[s.ProcessID]
			span := Span{
				// Jaeger drops the leading zeros of an ID; OTel keeps them.
				TraceID:    fmt.Sprintf("%032s", s.TraceID),
				SpanID:     fmt.Sprintf("%016s", s.SpanID),
				Operation:  s.OperationName,
				Service:    process.ServiceName,
				Start:      time.UnixMicro(s.StartTime),
				Duration:   time.Duration(s.Duration) * time.Microsecond,
				Attributes: text(s.Tags),
				Resource:   text(process.Tags),
			}
			for _, ref := range s.References {
				if ref.RefType == "CHILD_OF" {
					span.ParentSpanID = fmt.Sprintf("%016s", ref.SpanID)
					break
				}
			}
			spans = append(spans, span)
		}
	}
	sort.SliceStable(spans, func(a, b int) bool { return spans[a].Start.Before(spans[b].Start) })
	return spans, nil
}

// String formats s for failure messages: service/operation, IDs, attributes.
func (s Span) String() string {
	keys := make([]string, 0, len(s.Attributes))
	for k := range s.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	attrs := make([]string, len(keys))
	for i, k := range keys {
		attrs[i] = k + "=" + s.Attributes[k]
	}
	return fmt.Sprintf("%s/%s span %s parent %q {%s}", s.Service, s.Operation, s.SpanID, s.ParentSpanID, strings.Join(attrs, " "))
}
