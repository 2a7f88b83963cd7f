package mesh

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel/propagation"
	"google.golang.org/grpc/codes"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/telemetry"
)

// injectHTTP returns req with the request's trace context and peer
// header added: a shallow copy with its own headers, since a
// RoundTripper does not change the caller's request.
func injectHTTP(req *http.Request, tr *telemetry.Request) *http.Request {
	out := new(http.Request)
	*out = *req
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	tr.Inject(headerCarrier(out.Header))
	return out
}

// headerCarrier is propagation.HeaderCarrier without its cost per
// request: the keys that propagators and the peer header use are
// canonicalized once, not on every Get and Set.
type headerCarrier http.Header

func (h headerCarrier) Get(key string) string {
	if v := h[canonicalKey(key)]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h headerCarrier) Set(key, value string) { h[canonicalKey(key)] = []string{value} }

func (h headerCarrier) Keys() []string { return propagation.HeaderCarrier(h).Keys() }

// canonicalKeys are the headers telemetry reads and writes on every
// request, in their canonical form.
var canonicalKeys = map[string]string{}

func init() {
	for _, k := range []string{telemetry.HeaderPeer, "traceparent", "tracestate", "baggage"} {
		canonicalKeys[k] = http.CanonicalHeaderKey(k)
	}
}

func canonicalKey(k string) string {
	if c, ok := canonicalKeys[k]; ok {
		return c
	}
	return http.CanonicalHeaderKey(k)
}

// faultFlags records the fault a call met: a delay, and an abort when
// resp is its local reply.
func faultFlags(tr *telemetry.Request, call *dataplane.Call, resp *http.Response) {
	if call.Delayed() {
		tr.Flag(telemetry.FlagFaultDelay, "")
	}
	if resp != nil {
		tr.Flag(telemetry.FlagFaultAbort, "fault filter abort")
	}
}

// endClientHTTP ends a client request's record: at once when it got no
// response, else when the response body is read to its end or closed,
// so that the duration and the response bytes cover the body.
func endClientHTTP(tr *telemetry.Request, req *http.Request, resp *http.Response, err error) (*http.Response, error) {
	if tr == nil {
		return resp, err
	}
	if req.ContentLength > 0 {
		tr.AddBytes(req.ContentLength, 0)
	}
	if err != nil {
		if errors.Is(err, context.Canceled) || req.Context().Err() != nil {
			tr.Flag(telemetry.FlagDownstreamCancel, err.Error())
		} else if !tr.Refused() {
			tr.Flag(telemetry.FlagUpstreamConnect, err.Error())
		}
		tr.End(0, codes.OK)
		return resp, err
	}
	resp.Body = &telemetryBody{ReadCloser: resp.Body, tr: tr, status: resp.StatusCode}
	return resp, nil
}

// telemetryBody counts a response body and ends its request's record at
// its end or close, whichever comes first.
type telemetryBody struct {
	io.ReadCloser
	tr     *telemetry.Request
	status int
	n      atomic.Int64
}

func (b *telemetryBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	if err == io.EOF {
		b.end()
	}
	return n, err
}

func (b *telemetryBody) Close() error {
	err := b.ReadCloser.Close()
	b.end()
	return err
}

func (b *telemetryBody) end() {
	if n := b.n.Swap(0); n > 0 {
		b.tr.AddBytes(0, n)
	}
	b.tr.End(b.status, codes.OK) // only the first End counts
}

// telemetryWriter records what a served request's handler, or the
// middleware refusing it, writes: the status, the body bytes, and the
// first bytes of a refusal's body, which say why.
type telemetryWriter struct {
	http.ResponseWriter
	tr      *telemetry.Request
	status  int
	n       int64
	started bool         // the request reached the user's handler
	refusal bytes.Buffer // what the middleware wrote, up to maxRefusal bytes
}

const maxRefusal = 256

func (w *telemetryWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *telemetryWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !w.started && w.refusal.Len() < maxRefusal {
		w.refusal.Write(p[:min(len(p), maxRefusal-w.refusal.Len())])
	}
	n, err := w.ResponseWriter.Write(p)
	w.n += int64(n)
	return n, err
}

// Flush lets handlers stream through the writer.
func (w *telemetryWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap is for http.ResponseController.
func (w *telemetryWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// end ends the record: a response the middleware wrote is a refusal,
// whose reason is its body.
func (w *telemetryWriter) end(r *http.Request) {
	status := w.status
	if status == 0 {
		status = http.StatusOK // net/http's, for a handler that wrote nothing
	}
	if r.ContentLength > 0 {
		w.tr.AddBytes(r.ContentLength, 0)
	}
	w.tr.AddBytes(0, w.n)
	if !w.started {
		reason := strings.TrimSpace(w.refusal.String())
		switch status {
		case http.StatusTooManyRequests:
			w.tr.Flag(telemetry.FlagRateLimited, reason)
		case http.StatusForbidden:
			w.tr.Denied(reason)
		default:
			w.tr.Flag(0, reason)
		}
	}
	w.tr.End(status, codes.OK)
}

// startServerHTTP starts a served request's record, and the writer that
// records its response; nil when the mesh has no telemetry.
func (s *HTTPServer) startServerHTTP(w http.ResponseWriter, r *http.Request) *telemetryWriter {
	tr := s.m.tel.StartServer(r.Context(), telemetry.HTTP, r.Method, r.URL.Path, headerCarrier(r.Header), peerCertificates(r))
	if tr == nil {
		return nil
	}
	return &telemetryWriter{ResponseWriter: w, tr: tr}
}

func peerCertificates(r *http.Request) []*x509.Certificate {
	if r.TLS == nil {
		return nil
	}
	return r.TLS.PeerCertificates
}

// tracedHandler runs the user's handler under the request's span, and
// marks the request as having reached it.
type tracedHandler struct{ next http.Handler }

func (h tracedHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if tw, ok := w.(*telemetryWriter); ok {
		tw.started = true
		if ctx := tw.tr.Context(); ctx != r.Context() { // a span's: not without tracing
			r = r.WithContext(ctx)
		}
	}
	h.next.ServeHTTP(w, r)
}
