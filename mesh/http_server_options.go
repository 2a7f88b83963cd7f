package mesh

import (
	"net/http"
	"time"
)

// HTTPServerLimits bound what a mesh HTTP server accepts from clients.
// Zero fields take the defaults given; a negative timeout turns it off.
type HTTPServerLimits struct {
	// ReadHeaderTimeout bounds reading a request's line and headers.
	// Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout is how long a keep-alive connection may wait for its
	// next request. Default 2 minutes: longer than the mesh HTTP client
	// keeps an idle connection (90s), so that the client closes it first
	// and never sends a request on a connection the server is closing.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds the size of a request's line and header
	// fields; a larger request gets 431. Default 60 KiB, Envoy's default
	// (max_request_headers_kb) where net/http's is 1 MiB.
	MaxHeaderBytes int
}

// The defaults of HTTPServerLimits.
const (
	defaultReadHeaderTimeout = 10 * time.Second
	defaultIdleTimeout       = 2 * time.Minute
	defaultMaxHeaderBytes    = 60 << 10
)

// WithHTTPServerLimits sets the limits of a mesh HTTP server. gRPC servers
// ignore it.
func WithHTTPServerLimits(l HTTPServerLimits) ServerOption { return httpLimitsOption(l) }

// httpLimitsOption is read by NewHTTPServer; it leaves the options every
// server shares alone.
type httpLimitsOption HTTPServerLimits

func (httpLimitsOption) applyServer(*serverOptions) {}

// httpServerLimits returns the limits opts set, defaults filled in.
func httpServerLimits(opts []ServerOption) HTTPServerLimits {
	var l HTTPServerLimits
	for _, o := range opts {
		if o, ok := o.(httpLimitsOption); ok {
			l = HTTPServerLimits(o)
		}
	}
	timeout := func(d, def time.Duration) time.Duration {
		switch {
		case d < 0:
			return 0 // net/http's "none"
		case d == 0:
			return def
		}
		return d
	}
	l.ReadHeaderTimeout = timeout(l.ReadHeaderTimeout, defaultReadHeaderTimeout)
	l.IdleTimeout = timeout(l.IdleTimeout, defaultIdleTimeout)
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = defaultMaxHeaderBytes
	}
	return l
}

// headerBytes is the size of r's request line and header fields as sent
// over HTTP/1.1. net/http enforces MaxHeaderBytes only to within 4 KiB
// (it counts what it has buffered); this lets the server hold to it.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + len("  \r\n")
	if r.Host != "" {
		n += len("Host: \r\n") + len(r.Host)
	}
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n + len("\r\n")
}
