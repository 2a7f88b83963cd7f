package mesh_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
)

// denyAdminAndDelete refuses /admin, everything under it, and DELETE, to
// anyone.
const denyAdminAndDelete = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: deny-admin
spec:
  selector:
    matchLabels:
      app: greeter
  action: DENY
  rules:
  - to:
    - operation:
        paths:
        - /admin
        - /admin/*
  - to:
    - operation:
        methods:
        - DELETE
`

// pathRecorder answers 200 with the method and path it was given, in
// headers, and remembers every request it served.
type pathRecorder struct {
	mu   sync.Mutex
	seen []string // "METHOD path"
}

func (p *pathRecorder) name(string, string) {}

func (p *pathRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	p.seen = append(p.seen, r.Method+" "+r.URL.Path)
	p.mu.Unlock()
	w.Header().Set("X-Path", r.URL.Path)
	w.Header().Set("X-Raw-Path", r.URL.EscapedPath())
	w.Header().Set("X-Request-URI", r.RequestURI)
	io.WriteString(w, "ok")
}

func (p *pathRecorder) requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.seen...)
}

// rawRequest sends one request, written as given, in plaintext to addr,
// so that the path and method reach the server byte for byte.
func rawRequest(ctx context.Context, addr, method, target string, header ...string) (*http.Response, string, error) {
	var d net.Dialer
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, "", err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	msg := method + " " + target + " HTTP/1.1\r\nHost: greeter\r\nConnection: close\r\n"
	for _, h := range header {
		msg += h + "\r\n"
	}
	if _, err := io.WriteString(c, msg+"\r\n"); err != nil {
		return nil, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp, strings.TrimSpace(string(body)), err
}

// waitPolicy waits until the server at addr serves GET /public, that is,
// until it has its policy.
func waitPolicy(t *testing.T, addr string) {
	t.Helper()
	meshtest.WaitUntil(t, 15*time.Second, "the server to have its policy", func() bool {
		resp, _, err := rawRequest(t.Context(), addr, "GET", "/public")
		return err == nil && resp.StatusCode == http.StatusOK
	})
}

func TestHTTPPathAndMethodTricks(t *testing.T) {
	cp, _ := startControlPlane(t, map[string]string{"deny-admin.yaml": denyAdminAndDelete})
	rec := &pathRecorder{}
	srv := startHTTPGreeter(t, cp.XDSAddr(), "v1", rec)
	waitPolicy(t, srv.addr)

	refused := []struct {
		method, target string
		status         int
	}{
		{"GET", "/admin", 403},
		{"GET", "/admin/users", 403},
		{"GET", "//admin", 403},
		{"GET", "///admin//users", 403},
		{"GET", "/./admin", 403},
		{"GET", "/x/../admin", 403},
		{"GET", "/x/./../admin", 403},
		{"GET", "/../admin", 403},
		{"GET", "/%2e/admin", 403},
		{"GET", "/%2E%2e/admin", 403},
		{"GET", "/x/%2e%2e/admin", 403},
		{"GET", "/%61dmin", 403},
		{"GET", "/%41dmin/../admin", 403},
		{"GET", `/\admin`, 403},
		{"GET", `/x\..\admin`, 403},
		{"GET", "/x/..%2Fadmin", 403},
		{"GET", "/x%2F..%2Fadmin", 403},
		{"GET", "/x%5c..%5cadmin", 403},
		{"GET", "%2Fadmin", 400},
		{"GET", "/admin%2F", 403},
		{"GET", "/admin/.", 403},
		{"GET", "/admin?x=1", 403},
		{"GET", "http://greeter/x/../admin", 403},
		{"GET", "/admin%00", 400},
		{"GET", "/public%00/../admin", 400},
		{"GET", "/%zzadmin", 400},
		{"DELETE", "/public", 403},
		{"delete", "/public", 400},
		{"Delete", "/public", 400},
		{"GeT", "/admin", 400},
		{"get", "/public", 400},
	}
	for _, tc := range refused {
		resp, body, err := rawRequest(t.Context(), srv.addr, tc.method, tc.target)
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.target, err)
			continue
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s: got %d (%s), want %d", tc.method, tc.target, resp.StatusCode, body, tc.status)
		}
	}

	served := []struct {
		method, target string
		path           string // what the handler sees: URL.Path
		requestURI     string
	}{
		{"GET", "/public", "/public", "/public"},
		{"GET", "/adminx", "/adminx", "/adminx"},
		{"GET", "/public/../public/x", "/public/x", "/public/x"},
		{"GET", "//public///x?q=%2F..", "/public/x", "/public/x?q=%2F.."},
		{"GET", "/%70ublic/%7euser", "/public/~user", "/public/~user"},
		{"GET", "/a%2fb", "/a/b", "/a/b"},
		{"GET", "/a%3Fb%20c", "/a?b c", "/a%3Fb%20c"},
		{"GET", "/a%3fb", "/a?b", "/a%3Fb"},
		{"POST", "/public", "/public", "/public"},
		{"M-SEARCH", "/public", "/public", "/public"},
	}
	for _, tc := range served {
		resp, body, err := rawRequest(t.Context(), srv.addr, tc.method, tc.target, "Content-Length: 0")
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.target, err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s %s: got %d (%s), want 200", tc.method, tc.target, resp.StatusCode, body)
			continue
		}
		if got := resp.Header.Get("X-Path"); got != tc.path {
			t.Errorf("%s %s: the handler saw the path %q, want %q", tc.method, tc.target, got, tc.path)
		}
		if got := resp.Header.Get("X-Request-URI"); got != tc.requestURI {
			t.Errorf("%s %s: the handler saw the request URI %q, want %q", tc.method, tc.target, got, tc.requestURI)
		}
	}

	// A refusal says what was wrong.
	for _, tc := range []struct{ method, target, want string }{
		{"delete", "/public", `method "delete" is not an upper-case token (RFC 9110)`},
		{"GET", "/a%00", "%00"},
		{"GET", "/admin", `deny policy "ns[default]-policy[deny-admin]-rule[0]"`},
	} {
		_, body, err := rawRequest(t.Context(), srv.addr, tc.method, tc.target)
		if err != nil || !strings.Contains(body, tc.want) {
			t.Errorf("%s %s: got %q (%v), want a reason saying %s", tc.method, tc.target, body, err, tc.want)
		}
	}

	// The same over the mesh's own client, over mTLS.
	c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
	if _, err := httpCall(t.Context(), c, "/public", ""); err != nil {
		t.Errorf("GET /public through the mesh: %v", err)
	}
	for _, p := range []string{"//admin", "/./admin", "/x/../admin", "/%2e/admin"} {
		r, err := httpCall(t.Context(), c, p, "")
		if r.status != http.StatusForbidden {
			t.Errorf("GET %s through the mesh: got %d (%v), want 403", p, r.status, err)
		}
	}

	// Not even a handler that cleans paths, or compares methods without
	// case, could have served /admin or a DELETE.
	for _, seen := range rec.requests() {
		method, p, _ := strings.Cut(seen, " ")
		p = path.Clean(strings.ReplaceAll(p, `\`, "/"))
		if strings.HasPrefix(p, "/admin/") || p == "/admin" || strings.EqualFold(method, "DELETE") {
			t.Errorf("the handler served %s", seen)
		}
	}
	if t.Failed() {
		t.Logf("the handler saw: %q", rec.requests())
	}
}

// sanRefusal starts an HTTP greeter whose cluster expects san
// (secureServiceEntry), and a client, and waits until the client refuses
// the server: its SVID matches none of the names. It returns the client,
// the config directory, and the refusal.
func sanRefusal(t *testing.T, san string) (*http.Client, string, error) {
	t.Helper()
	cp, dir := startControlPlane(t, map[string]string{"greeter.yaml": secureServiceEntry(san)})
	startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
	waitRegistered(t, cp, 1)
	c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
	var err error
	meshtest.WaitUntil(t, 15*time.Second, "the request to fail the server's identity check", func() bool {
		_, err = httpCall(t.Context(), c, "/", "")
		return err != nil && strings.Contains(err.Error(), "matches none")
	})
	t.Logf("refused: %v", err)
	return c, dir, err
}

func TestHTTPClusterSANIsMatchedExactly(t *testing.T) {
	// The server's SVID has no SAN secure.example: the client refuses it,
	// and says which SAN it expected.
	c, dir, err := sanRefusal(t, "secure.example")
	if !strings.Contains(err.Error(), "secure.example") {
		t.Errorf("the refusal %q does not name the expected SAN secure.example", err)
	}

	// The same server, with the SANs left to the control plane (its
	// SPIFFE ID), is served.
	meshtest.WriteFile(t, dir, "greeter.yaml", secureServiceEntry(""))
	meshtest.WaitUntil(t, 15*time.Second, "the server to be accepted by its SPIFFE ID", func() bool {
		r, err := httpCall(t.Context(), c, "/", "")
		return err == nil && r.caller != "plaintext"
	})
}

func TestHTTPServerLimits(t *testing.T) {
	cp, _ := startControlPlane(t, nil)
	m := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"})
	byDefault := listen(t, "127.0.0.1:0")
	serveHTTPGreeterOn(t, m, byDefault, "v1", &pathRecorder{})
	small := listen(t, "127.0.0.1:0")
	serveHTTPGreeterOn(t, m, small, "v1", &pathRecorder{}, mesh.WithHTTPServerLimits(mesh.HTTPServerLimits{MaxHeaderBytes: 8 << 10, IdleTimeout: 100 * time.Millisecond}))
	waitPolicy(t, byDefault.Addr().String())
	waitPolicy(t, small.Addr().String())

	for _, tc := range []struct {
		addr   string
		size   int // of one header's value
		status int
	}{
		{byDefault.Addr().String(), 59 << 10, http.StatusOK},
		{byDefault.Addr().String(), 60<<10 + 1, http.StatusRequestHeaderFieldsTooLarge},
		{byDefault.Addr().String(), 62 << 10, http.StatusRequestHeaderFieldsTooLarge},
		{small.Addr().String(), 7 << 10, http.StatusOK},
		{small.Addr().String(), 9 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		resp, body, err := rawRequest(t.Context(), tc.addr, "GET", "/public", "X-Big: "+strings.Repeat("a", tc.size))
		if err != nil {
			t.Errorf("%d bytes of header to %s: %v", tc.size, tc.addr, err)
			continue
		}
		if resp.StatusCode != tc.status {
			t.Errorf("%d bytes of header to %s: got %d (%.80s), want %d", tc.size, tc.addr, resp.StatusCode, body, tc.status)
		}
	}

	// Far past the limit, net/http answers 431 and hangs up while the
	// client is still writing, which may reset the connection first.
	resp, _, err := rawRequest(t.Context(), byDefault.Addr().String(), "GET", "/public", "X-Big: "+strings.Repeat("a", 200<<10))
	if err == nil && resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("200 KiB of header: got %d, want 431 or a reset", resp.StatusCode)
	}

	// An idle keep-alive connection is closed after IdleTimeout.
	c, err := net.Dial("tcp", small.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /public HTTP/1.1\r\nHost: greeter\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the idle connection was not closed by the server: %v", err)
	}
}

func TestHTTPWildcardBoundServer(t *testing.T) {
	for _, bind := range []string{"0.0.0.0:0", "[::]:0"} {
		t.Run(bind, func(t *testing.T) {
			lis, err := net.Listen("tcp", bind)
			if err != nil {
				t.Skipf("cannot listen on %s here: %v", bind, err)
			}
			cp, _ := startControlPlane(t, map[string]string{"deny-admin.yaml": denyAdminAndDelete})
			m := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"})
			rec := &pathRecorder{}
			serveHTTPGreeterOn(t, m, lis, "v1", rec, mesh.WithAdvertiseAddress("127.0.0.1"))
			c := httpClientFor(t, startMesh(t, cp.XDSAddr(), "client", nil))
			meshtest.WaitUntil(t, 15*time.Second, "the wildcard-bound server to answer 200", func() bool {
				_, err := httpCall(t.Context(), c, "/public", "")
				return err == nil
			})
			r, err := httpCall(t.Context(), c, "/admin", "")
			if r.status != http.StatusForbidden {
				t.Errorf("GET /admin: got %d (%v), want 403 from its AuthorizationPolicy", r.status, err)
			}
			// Plaintext to another local address of the port, under
			// PERMISSIVE: the same policy.
			_, port := splitHostPort(t, lis.Addr().String())
			resp, body, err := rawRequest(t.Context(), fmt.Sprintf("127.0.0.2:%d", port), "GET", "/admin")
			if err == nil && resp.StatusCode != http.StatusForbidden {
				t.Errorf("GET /admin on 127.0.0.2: got %d (%s), want 403", resp.StatusCode, body)
			}
			for _, seen := range rec.requests() {
				if strings.Contains(seen, "/admin") {
					t.Errorf("the handler served %s", seen)
				}
			}
		})
	}
}
