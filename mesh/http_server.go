package mesh

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshlet/meshlet/internal/dataplane"
	"github.com/meshlet/meshlet/resolver"
	"github.com/meshlet/meshlet/security"
)

// HTTPServer is a net/http server in the mesh. It registers with the
// control plane while it serves, follows the control plane's server
// Listener for its address (PeerAuthentication decides whether plaintext is
// accepted; AuthorizationPolicy decides who may call what), serves mTLS
// with the workload's identity, and drains before it stops.
type HTTPServer struct {
	*lifecycle
	srv    *http.Server
	limits HTTPServerLimits

	inbound dataplane.InboundSet // the policy of each listening address

	mu    sync.Mutex
	conns map[net.Conn]http.ConnState
}

// NewHTTPServer returns a mesh HTTP server for h. Call Serve or
// ListenAndServe. Its limits are HTTPServerLimits' defaults unless
// WithHTTPServerLimits says otherwise.
func (m *Mesh) NewHTTPServer(h http.Handler, opts ...ServerOption) (*HTTPServer, error) {
	s := &HTTPServer{
		lifecycle: newLifecycle(m, opts, "HTTP"),
		limits:    httpServerLimits(opts),
		conns:     map[net.Conn]http.ConnState{},
	}
	s.srv = &http.Server{
		Handler:           s.middleware(h),
		ReadHeaderTimeout: s.limits.ReadHeaderTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		MaxHeaderBytes:    s.limits.MaxHeaderBytes,
		ConnState:         s.connState,
	}
	if err := s.track(s); err != nil {
		return nil, err
	}
	return s, nil
}

// ListenAndServe listens on addr ("127.0.0.1:8080") and calls Serve.
func (s *HTTPServer) ListenAndServe(addr string) error {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mesh: listen %s: %w", addr, err)
	}
	return s.Serve(lis)
}

// Serve registers the server and serves on lis until Shutdown or Stop. The
// endpoint enters callers' endpoint sets once the server has its Listener
// from the control plane, and with it its policy.
func (s *HTTPServer) Serve(lis net.Listener) error {
	rc, err := s.waitXDSClient(lis.Addr())
	if err != nil {
		lis.Close()
		return err
	}
	reg, err := s.register(lis)
	if err != nil {
		lis.Close()
		if errors.Is(err, errServerStopped) {
			return http.ErrServerClosed
		}
		return err
	}
	in := s.watchInbound(rc, lis, reg, nil)
	if !s.inbound.Add(lis.Addr(), in) { // stopped meanwhile
		lis.Close()
		return http.ErrServerClosed
	}
	// The identity's own trust domain may call; which IDs may call what is
	// AuthorizationPolicy's to decide.
	tlsCfg := security.ServerTLSConfig(s.m.identity, tlsconfig.AuthorizeMemberOf(s.m.spiffeID.TrustDomain()))
	return s.srv.Serve(security.PermissiveListener(lis, tlsCfg, in.Strict))
}

// middleware enforces the control plane's policy for the server Listener
// of the address a request came in on. A request whose line and headers
// pass the server's MaxHeaderBytes gets 431. A request whose method is
// not an upper-case token, or whose path the Listener's normalization
// refuses, gets 400; the path is then normalized as the Listener says,
// and the handler gets the request with the path that authorization saw.
// A request that AuthorizationPolicy refuses gets 403 with the reason;
// one that comes before the server has its policy gets 503. It also
// tracks requests for draining. It is not exported: it needs the policy
// that Serve follows for each listening address.
func (s *HTTPServer) middleware(next http.Handler) http.Handler {
	if s.m.tel != nil {
		next = tracedHandler{next}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.touch()
		if tw := s.startServerHTTP(w, r); tw != nil {
			defer tw.end(r)
			w = tw
		}
		if headerBytes(r) > s.limits.MaxHeaderBytes {
			http.Error(w, fmt.Sprintf("mesh: the request's headers pass this server's limit of %d bytes", s.limits.MaxHeaderBytes), http.StatusRequestHeaderFieldsTooLarge)
			return
		}
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		l := s.inbound.Listener(local)
		if l == nil {
			http.Error(w, msgNoPolicy, http.StatusServiceUnavailable)
			return
		}
		s.enforce(l, local, w, r, next)
	})
}

// enforce serves r as server Listener l says: refused, redirected, or
// passed on to next with its path normalized. A request over a rate limit
// gets 429, with Retry-After.
func (s *HTTPServer) enforce(l *resolver.Listener, local net.Addr, w http.ResponseWriter, r *http.Request, next http.Handler) {
	if !validMethod(r.Method) {
		http.Error(w, fmt.Sprintf("mesh: method %q is not an upper-case token (RFC 9110)", r.Method), http.StatusBadRequest)
		return
	}
	raw := rawPath(r)
	path, redirect, err := normalizePath(raw, l)
	if err == nil && redirect && strings.HasPrefix(path, "//") {
		// A client would read //host/... as another host.
		err = fmt.Errorf("the path %q, unescaped, starts with //", path)
	}
	if err != nil {
		http.Error(w, "mesh: "+err.Error(), http.StatusBadRequest)
		return
	}
	if redirect {
		loc := path
		if r.URL.RawQuery != "" {
			loc += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusTemporaryRedirect)
		return
	}
	if path != raw {
		// A shallow copy, as Request.WithContext makes: handlers do
		// not change the request they are given.
		r2 := new(http.Request)
		*r2 = *r
		u := *r.URL
		r2.URL = &u
		if err := setPath(r2, path); err != nil {
			http.Error(w, "mesh: "+err.Error(), http.StatusBadRequest)
			return
		}
		r = r2
	}
	req := inboundRequest(r, path, local)
	err = dataplane.Authorize(l, req)
	if err == nil {
		err = s.inbound.RateLimit(req)
	}
	if err != nil {
		var d *resolver.Denial
		var rl *dataplane.InboundRateLimitError
		switch {
		case errors.As(err, &rl):
			writeRateLimited(w, rl)
		case errors.As(err, &d):
			// Envoy's words, then which policy decided.
			http.Error(w, "RBAC: access denied: incoming request "+d.Reason(), http.StatusForbidden)
		case errors.Is(err, dataplane.ErrInboundPlaintext):
			// A keep-alive connection made before the port became
			// STRICT: the client's next one is refused or mTLS.
			w.Header().Set("Connection", "close")
			http.Error(w, msgPlaintext, http.StatusServiceUnavailable)
		default:
			http.Error(w, msgNoPolicy, http.StatusServiceUnavailable)
		}
		return
	}
	next.ServeHTTP(w, r)
}

// rawPath is the request's path as the client sent it, escapes and all:
// URL.EscapedPath may re-escape it, losing an escaped slash.
func rawPath(r *http.Request) string {
	u := r.RequestURI
	if u == "" {
		return r.URL.EscapedPath() // a request not read by net/http's server
	}
	u, _, _ = strings.Cut(u, "?")
	if u != "*" && !strings.HasPrefix(u, "/") {
		// absolute-form: scheme://authority/path
		if _, rest, ok := strings.Cut(u, "://"); ok {
			u = ""
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				u = rest[i:]
			}
		}
	}
	return u
}

func (s *HTTPServer) connState(c net.Conn, st http.ConnState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st == http.StateClosed || st == http.StateHijacked {
		delete(s.conns, c)
		return
	}
	s.conns[c] = st
}

// inboundRequest is what the server's policy sees of r; path is its
// (normalized) path, escaped as Envoy's RBAC filter sees :path.
func inboundRequest(r *http.Request, path string, local net.Addr) *dataplane.InboundRequest {
	req := &dataplane.InboundRequest{
		Method:    r.Method,
		Path:      path,
		Authority: r.Host,
		Header:    func(name string) []string { return r.Header.Values(name) },
		Local:     local,
		Remote:    remoteAddr(r.RemoteAddr),
	}
	if r.TLS != nil {
		req.PeerCertificates = r.TLS.PeerCertificates
		req.ServerName = r.TLS.ServerName
	}
	return req
}

// remoteAddr is Request.RemoteAddr as an address and port; the zero value
// if it is not one.
func remoteAddr(s string) netip.AddrPort {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return netip.AddrPort{}
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

// Shutdown drains and stops the server: it takes its endpoints out of
// callers' endpoint sets, waits until callers have acknowledged that and
// stopped sending (bounded by the drain timeout and by ctx), then shuts
// the http.Server down, waiting for running requests until ctx ends.
func (s *HTTPServer) Shutdown(ctx context.Context) error {
	regs := s.drain(ctx)
	// Callers have moved off: a connection that carries no request now
	// will not carry one. net/http would wait 5s for connections that never
	// carried a request (a client's spare dial); close them now.
	s.mu.Lock()
	for c, st := range s.conns {
		if st == http.StateNew || st == http.StateIdle {
			c.Close()
		}
	}
	s.mu.Unlock()
	err := s.srv.Shutdown(ctx)
	s.finish(regs)
	return err
}

// Stop deregisters the server and closes it at once. Prefer Shutdown.
func (s *HTTPServer) Stop() {
	regs := s.markStopped()
	s.srv.Close()
	s.finish(regs)
}

func (s *HTTPServer) finish(regs []*registration) {
	s.inbound.Close()
	s.deregister(regs)
	s.untrack(s)
}
