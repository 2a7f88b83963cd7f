package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/envoydefaults"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/resolver"
)

// UnknownHosts says what the mesh HTTP client does with a request for a
// host the control plane says does not exist. A host it has not answered
// for yet is waited for, never passed through or refused (see
// ConfigWait).
type UnknownHosts int

const (
	// PassThrough sends the request, unchanged, with the base transport.
	PassThrough UnknownHosts = iota
	// Refuse fails the request with ErrUnknownHost.
	Refuse
)

// ErrUnknownHost is wrapped by the error for a call to a host the control
// plane says does not exist: an HTTP request under Refuse, an RPC (whose
// status is Unavailable), and WaitRoutable's error when it gives up on
// such a host.
var ErrUnknownHost = errors.New("mesh: host is not in the mesh")

// HTTPOption configures a mesh HTTP transport.
type HTTPOption interface{ applyHTTP(*httpOptions) }

type httpOptionFunc func(*httpOptions)

func (f httpOptionFunc) applyHTTP(o *httpOptions) { f(o) }

type httpOptions struct {
	base    http.RoundTripper
	unknown UnknownHosts
}

// WithBaseTransport sets the transport for requests that leave the mesh
// (https:// URLs, and unknown hosts under PassThrough). Default
// http.DefaultTransport.
func WithBaseTransport(rt http.RoundTripper) HTTPOption {
	return httpOptionFunc(func(o *httpOptions) { o.base = rt })
}

// WithUnknownHosts sets what happens to requests for hosts the mesh does
// not know. Default PassThrough.
func WithUnknownHosts(u UnknownHosts) HTTPOption {
	return httpOptionFunc(func(o *httpOptions) { o.unknown = u })
}

// HTTPClient returns an *http.Client on HTTPTransport. Close the
// transport (client.Transport.(*mesh.HTTPTransport)) when done, or let
// Mesh.Close do it.
func (m *Mesh) HTTPClient(ctx context.Context, opts ...HTTPOption) (*http.Client, error) {
	t, err := m.HTTPTransport(ctx, opts...)
	if err != nil {
		return nil, err
	}
	return &http.Client{Transport: t}, nil
}

// HTTPTransport returns an http.RoundTripper that routes plain-HTTP mesh
// requests as the control plane says, with the same semantics gRPC gets:
// http://reviews:9080/path (or reviews.default.svc.cluster.local:9080)
// picks a virtual host by authority, a route by path, headers and method,
// a cluster by weight, and an endpoint by the cluster's load-balancing
// policy; the route's timeout and retries apply; and the request goes over
// mTLS to the endpoint when the cluster says so, checking the server's
// SPIFFE identity. It connects meshlet's xDS client on first use, within
// ctx.
//
// It is safe for concurrent use, never changes the caller's request, and
// closes the request body on every path.
func (m *Mesh) HTTPTransport(ctx context.Context, opts ...HTTPOption) (*HTTPTransport, error) {
	o := httpOptions{base: http.DefaultTransport}
	for _, opt := range opts {
		opt.applyHTTP(&o)
	}
	v, err := m.routingView(ctx)
	if err != nil {
		return nil, err
	}
	t := &HTTPTransport{m: m, rc: v.rc, view: v, opts: o, upstreams: map[string]*upstream{}}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, errMeshClosed
	}
	if m.transports == nil {
		m.transports = map[*HTTPTransport]struct{}{}
	}
	m.transports[t] = struct{}{} // until t.Close, or the mesh's
	return t, nil
}

// RoundTrip implements http.RoundTripper.
func (t *HTTPTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme != "http" {
		// https:// is the caller's own TLS to somewhere: not the mesh's.
		return t.opts.base.RoundTrip(req)
	}
	host, port, err := splitAuthority(req.URL.Host)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	name := net.JoinHostPort(wire.QualifyHost(host, t.m.opts.namespace), port)
	routes, err := t.view.awaitRoutes(req.Context(), t.view.host(name), req.URL.Host, false)
	if err != nil {
		var unknown *hostError
		if errors.As(err, &unknown) && req.Context().Err() == nil && t.opts.unknown == PassThrough {
			return t.opts.base.RoundTrip(req)
		}
		closeBody(req)
		return nil, err
	}
	route, err := resolver.MatchRoute(routes, req.URL.Host, req.URL.Path, headerFunc(req.Header), req.Method)
	if err != nil {
		closeBody(req)
		return localReply(req, http.StatusNotFound, fmt.Sprintf("no route for %s %s%s", req.Method, req.URL.Host, req.URL.Path)), nil
	}
	return t.forward(req, route)
}

// forward sends req as route says: to a cluster of its action, with its
// timeout and retries.
func (t *HTTPTransport) forward(req *http.Request, route *resolver.Route) (*http.Response, error) {
	a := route.Action
	ctx, cancel := req.Context(), context.CancelFunc(func() {})
	if a.Timeout > 0 {
		ctx, cancel = context.WithTimeout(ctx, a.Timeout)
	}
	cluster := resolver.PickWeightedCluster(a, rand.Uint32())
	up := t.upstream(cluster)
	if err := up.wait(ctx); err != nil {
		cancel()
		closeBody(req)
		if ctx.Err() != nil && req.Context().Err() == nil {
			return localReply(req, http.StatusGatewayTimeout, "upstream request timeout"), nil
		}
		return localReply(req, http.StatusServiceUnavailable, "no healthy upstream: "+strings.TrimPrefix(err.Error(), "mesh: ")), nil
	}
	hash, hasHash := requestHash(req, a.HashPolicies)
	retries := 0
	if a.Retry != nil {
		retries = int(a.Retry.NumRetries)
	}
	tried := map[string]bool{}
	for attempt := 0; ; attempt++ {
		out, err := attemptRequest(ctx, req, attempt)
		if err != nil {
			cancel()
			closeBody(req)
			return nil, err
		}
		resp, retryable, err := up.send(ctx, out, balancer.Request{Hash: hash, HasHash: hasHash}, a.Retry, tried)
		if attempt < retries && retryable && ctx.Err() == nil && (req.Body == nil || req.GetBody != nil) {
			if resp != nil {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
			if !sleepBackoff(ctx, a.Retry, attempt) {
				break
			}
			continue
		}
		if err != nil {
			cancel()
			if errors.Is(err, context.DeadlineExceeded) && req.Context().Err() == nil {
				return localReply(req, http.StatusGatewayTimeout, "upstream request timeout"), nil
			}
			if errors.Is(err, balancer.ErrNoEndpoints) {
				return localReply(req, http.StatusServiceUnavailable, "no healthy upstream: "+describeCluster(cluster)+": "+err.Error()), nil
			}
			return nil, fmt.Errorf("mesh: %s %s: %w", req.Method, req.URL.Redacted(), err)
		}
		// The timeout covers reading the body too: cancel when it is
		// closed.
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
	cancel()
	if err := req.Context().Err(); err != nil {
		return nil, fmt.Errorf("mesh: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	return localReply(req, http.StatusGatewayTimeout, "upstream request timeout"), nil
}

// attemptRequest is the request for one attempt: a clone, with a fresh
// body after the first.
func attemptRequest(ctx context.Context, req *http.Request, attempt int) (*http.Request, error) {
	out := req.Clone(ctx)
	if out.Host == "" {
		out.Host = req.URL.Host
	}
	if attempt > 0 && req.Body != nil && req.Body != http.NoBody {
		body, err := req.GetBody()
		if err != nil {
			return nil, fmt.Errorf("mesh: body for a retry: %w", err)
		}
		out.Body = body
	}
	return out, nil
}

// sleepBackoff waits before retry attempt+1, Envoy's way: a random time up
// to base*2^attempt, at most max.
func sleepBackoff(ctx context.Context, p *resolver.RetryPolicy, attempt int) bool {
	base, maxWait := envoydefaults.RetryBaseInterval, envoydefaults.RetryMaxInterval
	if p.BackoffBase > 0 {
		base = p.BackoffBase
	}
	if p.BackoffMax > 0 {
		maxWait = p.BackoffMax
	}
	d := min(base<<attempt, maxWait)
	timer := time.NewTimer(rand.N(d) + 1)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// retryOn reports whether an attempt's outcome is one the policy retries,
// with Envoy's meaning of each condition for HTTP.
func retryOn(p *resolver.RetryPolicy, status int, err error) bool {
	if p == nil {
		return false
	}
	for _, on := range p.RetryOn {
		switch on {
		case "5xx":
			if err != nil || status >= 500 {
				return true
			}
		case "gateway-error":
			if status == 502 || status == 503 || status == 504 {
				return true
			}
		case "reset", "connect-failure", "refused-stream":
			if err != nil {
				return true
			}
		case "retriable-4xx":
			if status == 409 {
				return true
			}
		case "retriable-status-codes":
			if slices.Contains(p.RetriableStatusCodes, uint32(status)) {
				return true
			}
		}
	}
	return false
}

func splitAuthority(authority string) (host, port string, err error) {
	if !strings.Contains(authority, ":") || strings.HasSuffix(authority, "]") {
		return strings.Trim(authority, "[]"), "80", nil
	}
	host, port, err = net.SplitHostPort(authority)
	if err != nil {
		return "", "", fmt.Errorf("mesh: bad authority %q: %w", authority, err)
	}
	return host, port, nil
}

func headerFunc(h http.Header) func(string) []string {
	return func(name string) []string { return h.Values(name) }
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// localReply is the response the mesh gives itself, as Envoy's local
// replies: the status and a short body that says why.
func localReply(req *http.Request, code int, msg string) *http.Response {
	body := "mesh: " + msg + "\n"
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", code, http.StatusText(code)),
		StatusCode:    code,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        http.Header{"Content-Type": {"text/plain; charset=utf-8"}, "X-Meshlet-Local-Reply": {"true"}},
		Body:          io.NopCloser(strings.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// requestHash computes a request's hash for ring-hash clusters from the
// route's hash policies, as Envoy combines them.
func requestHash(req *http.Request, policies []resolver.HashPolicy) (uint64, bool) {
	var h uint64
	have := false
	for _, p := range policies {
		var v string
		switch p.Kind {
		case resolver.HashHeader:
			vals := req.Header.Values(p.Name)
			if len(vals) == 0 {
				continue
			}
			v = strings.Join(vals, ",")
			if p.Regex != nil {
				v = p.Regex.ReplaceAllString(v, p.Substitution)
			}
		case resolver.HashCookie:
			c, err := req.Cookie(p.Name)
			if err != nil {
				continue
			}
			v = c.Value
		case resolver.HashQueryParameter:
			if !req.URL.Query().Has(p.Name) {
				continue
			}
			v = req.URL.Query().Get(p.Name)
		default:
			continue
		}
		// Combine as Envoy does: rotate and xor.
		h = (h<<1 | h>>63) ^ balancer.HashString(v)
		have = true
		if p.Terminal {
			break
		}
	}
	return h, have
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
