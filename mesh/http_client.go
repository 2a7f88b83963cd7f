package mesh

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/meshlet/meshlet/balancer"
	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/internal/wire"
	"github.com/meshlet/meshlet/policy"
	"github.com/meshlet/meshlet/telemetry"
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
var ErrUnknownHost = dataplane.ErrUnknownHost

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
// picks a virtual host by authority, a route by path, query, headers and
// method, a cluster by weight, and an endpoint by the cluster's
// load-balancing policy; the route's timeout and retries apply; and the
// request goes over mTLS to the endpoint when the cluster says so,
// checking the server's SPIFFE identity. It waits for meshlet's xDS
// client to connect, within ctx.
//
// It is safe for concurrent use, never changes the caller's request, and
// closes the request body on every path.
func (m *Mesh) HTTPTransport(ctx context.Context, opts ...HTTPOption) (*HTTPTransport, error) {
	o := httpOptions{base: http.DefaultTransport}
	for _, opt := range opts {
		opt.applyHTTP(&o)
	}
	core, err := m.dataplane(ctx)
	if err != nil {
		return nil, err
	}
	t := &HTTPTransport{m: m, core: core, opts: o, pools: map[string]*pool{}}
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
	h, ok := t.hosts.Load(req.URL.Host)
	if !ok {
		host, port, err := splitAuthority(req.URL.Host)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		h, _ = t.hosts.LoadOrStore(req.URL.Host, t.core.Host(net.JoinHostPort(wire.QualifyHost(host, t.m.opts.namespace), port)))
	}
	routes, err := h.(*dataplane.Host).Routes(req.Context(), req.URL.Host, false)
	if err != nil {
		var unknown *dataplane.HostError
		if errors.As(err, &unknown) && req.Context().Err() == nil && t.opts.unknown == PassThrough {
			return t.opts.base.RoundTrip(req)
		}
		closeBody(req)
		return nil, err
	}
	path := req.URL.Path
	if req.URL.RawQuery != "" {
		path += "?" + req.URL.RawQuery
	}
	r := dataplane.Request{
		Authority: req.URL.Host,
		Path:      path,
		Method:    req.Method,
		Header:    req.Header.Values,
	}
	tr := t.m.tel.StartClient(req.Context(), telemetry.HTTP, req.Method, req.URL.Path, h.(*dataplane.Host).Name())
	route, err := dataplane.Match(routes, &r)
	if err != nil {
		closeBody(req)
		msg := fmt.Sprintf("no route for %s %s%s", req.Method, req.URL.Host, req.URL.Path)
		tr.Flag(telemetry.FlagNoRoute, msg)
		return endClientHTTP(tr, req, localReply(req, http.StatusNotFound, msg), nil)
	}
	if len(route.Action.HashPolicies) > 0 {
		r.Cookie = func(name string) (string, bool) {
			c, err := req.Cookie(name)
			if err != nil {
				return "", false
			}
			return c.Value, true
		}
	}
	call := h.(*dataplane.Host).NewCall(route, &r)
	if tr != nil {
		tr.Route(route.Name, call.Cluster.Name())
		req = injectHTTP(req, tr)
	}
	resp, err := t.forward(req, call, tr)
	return endClientHTTP(tr, req, resp, err)
}

// forward sends req as its call's route says: to the cluster it chose,
// with the route's timeout and retries.
func (t *HTTPTransport) forward(req *http.Request, call *dataplane.Call, tr *telemetry.Request) (*http.Response, error) {
	resp, err := injectFault(req, call)
	if tr != nil {
		faultFlags(tr, call, resp)
	}
	if resp != nil || err != nil {
		return resp, err
	}
	ctx, cancel := withTimeout(req.Context(), call.Route.Action.Timeout)
	if err := call.Cluster.Wait(ctx); err != nil {
		cancel()
		closeBody(req)
		if ctx.Err() != nil && req.Context().Err() == nil {
			tr.Flag(telemetry.FlagUpstreamTimeout, "upstream request timeout")
			return localReply(req, http.StatusGatewayTimeout, "upstream request timeout"), nil
		}
		msg := "no healthy upstream: " + strings.TrimPrefix(err.Error(), "mesh: ")
		tr.Flag(telemetry.FlagNoHealthyUpstream, msg)
		return localReply(req, http.StatusServiceUnavailable, msg), nil
	}
	rewindable := req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
	if !rewindable && call.Route.Action.Retry != nil && call.Route.Action.Retry.NumRetries > 0 {
		req, rewindable = replayable(req)
	}
	for {
		if err := call.Admit(); err != nil {
			// Over a limit, or the breaker open: refused before the
			// network, and not retried.
			cancel()
			closeBody(req)
			tr.Flag(telemetry.FlagUpstreamOverflow, err.Error())
			return localReply(req, http.StatusServiceUnavailable, err.Error()), nil
		}
		out, err := attemptRequest(ctx, req, call.Attempt())
		if err != nil {
			call.Release(dataplane.Outcome{Caller: true})
			cancel()
			closeBody(req)
			return nil, err
		}
		resp, o := t.send(ctx, call, out, tr)
		call.Release(o)
		if rewindable && call.CanRetry(ctx, o) {
			if resp != nil {
				io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
				resp.Body.Close()
			}
			if !call.Backoff(ctx) {
				break
			}
			continue
		}
		if call.RetriesExhausted(o) {
			tr.Flag(telemetry.FlagRetryLimit, "")
		}
		if err := o.Err; err != nil {
			cancel()
			if errors.Is(err, context.DeadlineExceeded) && req.Context().Err() == nil {
				tr.Flag(telemetry.FlagUpstreamTimeout, "upstream request timeout")
				return localReply(req, http.StatusGatewayTimeout, "upstream request timeout"), nil
			}
			if errors.Is(err, policy.ErrCircuitOpen) {
				tr.Flag(telemetry.FlagUpstreamOverflow, err.Error())
				return localReply(req, http.StatusServiceUnavailable, err.Error()), nil
			}
			if errors.Is(err, balancer.ErrNoEndpoints) {
				tr.Flag(telemetry.FlagNoHealthyUpstream, "no healthy upstream: "+err.Error())
				return localReply(req, http.StatusServiceUnavailable, "no healthy upstream: "+err.Error()), nil
			}
			return nil, fmt.Errorf("mesh: %s %s: %w", req.Method, req.URL.Redacted(), err)
		}
		// The timeout covers reading the body too: cancel when it is
		// closed.
		if call.Route.Action.Timeout > 0 {
			resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		} else {
			cancel()
		}
		return resp, nil
	}
	cancel()
	if err := req.Context().Err(); err != nil {
		return nil, fmt.Errorf("mesh: %s %s: %w", req.Method, req.URL.Redacted(), err)
	}
	tr.Flag(telemetry.FlagUpstreamTimeout, "upstream request timeout")
	return localReply(req, http.StatusGatewayTimeout, "upstream request timeout"), nil
}

// send makes one attempt: picks an endpoint the call has not tried,
// sends, and tells the balancer how it went.
func (t *HTTPTransport) send(ctx context.Context, call *dataplane.Call, req *http.Request, tel *telemetry.Request) (*http.Response, dataplane.Outcome) {
	res, err := call.Pick()
	if err != nil {
		closeBody(req)
		// No endpoint: Envoy retries this as a connect failure.
		return nil, dataplane.Outcome{Err: err}
	}
	call.Tried(res.Endpoint.Address)
	tel.Attempt(res.Endpoint.Address)
	tr, useTLS := t.transport(call.Cluster)
	req.URL.Host = res.Endpoint.Address
	req.URL.Scheme = "http"
	if useTLS {
		req.URL.Scheme = "https"
	}
	start := time.Now()
	attemptCtx, cancel := call.AttemptContext(ctx)
	perTry := cancel != nil
	if perTry {
		req = req.WithContext(attemptCtx)
	} else {
		cancel = noCancel
	}
	withExpectedTimeout(attemptCtx, req)
	if max := call.Cluster.ConnLifetime().MaxRequests; max > 0 {
		req = countRequest(req, max)
	}
	resp, err := tr.RoundTrip(req)
	if err == nil && attemptCtx.Err() != nil {
		// The answer came after the timeout fired (its headers raced the
		// cancel): as Envoy, which has answered 504 by then, drop it.
		resp.Body.Close()
		resp, err = nil, context.Cause(attemptCtx)
	}
	// A connection the cluster's maxConnections refused says nothing of
	// the endpoint, and is not retried (Envoy retries no overflow).
	o := dataplane.Outcome{Err: err, Caller: err != nil && (ctx.Err() != nil || errors.Is(err, policy.ErrCircuitOpen))}
	if resp != nil {
		o.Status = resp.StatusCode
	}
	dataplane.Report(res, o, start)
	if err != nil {
		cancel()
		return nil, o
	}
	if perTry {
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	}
	return resp, o
}

// withTimeout bounds ctx by d, if d is set; a cheap no-op otherwise.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d > 0 {
		return context.WithTimeout(ctx, d)
	}
	return ctx, noCancel
}

func noCancel() {}

// attemptRequest is the request for one attempt: a shallow copy with its
// own URL (the transport changes neither the headers nor the rest), with
// a fresh body after the first.
func attemptRequest(ctx context.Context, req *http.Request, attempt int) (*http.Request, error) {
	out := req.WithContext(ctx)
	u := *req.URL
	out.URL = &u
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

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
