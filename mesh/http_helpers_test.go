package mesh_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshlet/meshlet/mesh"
)

// httpInstance is one HTTP greeter in the mesh.
type httpInstance struct {
	server *mesh.HTTPServer
	addr   string
}

// startHTTPGreeter starts an HTTP greeter of version as service greeter,
// with g as its handler when not nil.
func startHTTPGreeter(t testing.TB, cpAddr, version string, g greeterHandler, extra ...mesh.Option) *httpInstance {
	t.Helper()
	m := startMesh(t, cpAddr, "greeter", map[string]string{"version": version}, extra...)
	return serveHTTPGreeter(t, m, version, g)
}

// serveHTTPGreeter serves g (the plain greeter when nil) as an instance
// of m, on a free loopback port until the test ends.
func serveHTTPGreeter(t testing.TB, m *mesh.Mesh, version string, g greeterHandler) *httpInstance {
	t.Helper()
	return serveHTTPGreeterOn(t, m, listen(t, "127.0.0.1:0"), version, g)
}

// serveHTTPGreeterOn serves g (the plain greeter when nil) as an instance
// of m, with opts, on lis until the test ends.
func serveHTTPGreeterOn(t testing.TB, m *mesh.Mesh, lis net.Listener, version string, g greeterHandler, opts ...mesh.ServerOption) *httpInstance {
	t.Helper()
	s, err := newHTTPGreeter(m, lis, version, g, opts...)
	if err != nil {
		t.Fatal(err)
	}
	serveUntilCleanup(t, s, lis)
	return &httpInstance{server: s, addr: lis.Addr().String()}
}

// newHTTPGreeter returns m's HTTP server of the greeter service for lis,
// with opts, serving g (the plain greeter when nil), which it tells its
// version and address.
func newHTTPGreeter(m *mesh.Mesh, lis net.Listener, version string, g greeterHandler, opts ...mesh.ServerOption) (*mesh.HTTPServer, error) {
	if g == nil {
		g = &httpGreeter{}
	}
	g.name(version, lis.Addr().String())
	return m.NewHTTPServer(g, append([]mesh.ServerOption{mesh.WithServicePort(greeterPort)}, opts...)...)
}

// httpClientFor returns m's mesh HTTP client. Hosts outside the mesh are
// refused unless opts say otherwise: a test must not resolve or reach
// anything beyond loopback.
func httpClientFor(t testing.TB, m *mesh.Mesh, opts ...mesh.HTTPOption) *http.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	c, err := m.HTTPClient(ctx, append([]mesh.HTTPOption{mesh.WithUnknownHosts(mesh.Refuse)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// httpReply is what one HTTP call saw.
type httpReply struct {
	status            int
	version, instance string
	caller            string
	body              string
}

// httpCall makes one GET to the greeter service, with end-user set when
// user is not empty.
func httpCall(ctx context.Context, c *http.Client, path, user string) (httpReply, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://greeter:%d%s", greeterPort, path), nil)
	if err != nil {
		return httpReply{}, err
	}
	if user != "" {
		req.Header.Set("end-user", user)
	}
	resp, err := c.Do(req)
	if err != nil {
		return httpReply{}, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	r := httpReply{status: resp.StatusCode, version: resp.Header.Get("X-Version"), instance: resp.Header.Get("X-Instance"),
		caller: resp.Header.Get("X-Caller"), body: strings.TrimSpace(string(body))}
	if resp.StatusCode != http.StatusOK {
		return r, fmt.Errorf("status %d: %s", resp.StatusCode, r.body)
	}
	return r, nil
}
