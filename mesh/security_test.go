package mesh_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane"
	"github.com/meshlet/meshlet/examples/greeterpb"
	"github.com/meshlet/meshlet/mesh"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
)

// identities is how workloads get their SVIDs in a test: from the control
// plane's built-in CA with per-workload tokens, or from a real SPIRE.
type identities struct {
	name string
	// cpOptions configure the control plane for this source.
	cpOptions []controlplane.Option
	// workload returns the mesh options that give service account sa its
	// identity.
	workload func(t *testing.T, sa string) []mesh.Option
}

const td = "cluster.local"

func spiffeFor(sa string) string { return "spiffe://" + td + "/ns/default/sa/" + sa }

// identitySources returns the sources the identity tests run over, with
// SVIDs of the given lifetime.
func identitySources(t *testing.T, ttl time.Duration, accounts ...string) []identities {
	t.Helper()
	var cpOpts []controlplane.Option
	cpOpts = append(cpOpts, controlplane.WithCAInsecureDev(false), controlplane.WithSVIDTTL(ttl))
	for _, sa := range accounts {
		cpOpts = append(cpOpts, controlplane.WithCAToken("token-"+sa, controlplane.Identity{Namespace: "default", ServiceAccount: sa}))
	}
	builtin := identities{
		name:      "built-in CA",
		cpOptions: cpOpts,
		workload: func(t *testing.T, sa string) []mesh.Option {
			return []mesh.Option{mesh.WithServiceAccount(sa), mesh.WithCAToken("token-" + sa)}
		},
	}
	// One SPIRE for the whole test, started here on the test's goroutine.
	s := meshtest.StartSPIRE(t)
	var mu sync.Mutex // subtests of server kinds run in parallel
	entries := map[string]bool{}
	spire := identities{
		name: "SPIRE",
		// The control plane trusts SPIRE's SVIDs on its own port; the
		// workloads trust the control plane through the roots it has in
		// this process.
		cpOptions: []controlplane.Option{controlplane.WithTrustBundle(s.Bundle(t)...)},
		workload: func(t *testing.T, sa string) []mesh.Option {
			t.Helper()
			mu.Lock()
			if !entries[sa] {
				s.CreateEntry(t, spiffeFor(sa), ttl)
				entries[sa] = true
			}
			mu.Unlock()
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			src, err := security.NewWorkloadAPISource(ctx, security.WithSocketAddr(s.Addr()),
				security.WithExpectedID(spiffeid.RequireFromString(spiffeFor(sa))))
			if err != nil {
				t.Fatalf("SVID for %s from SPIRE: %v", sa, err)
			}
			t.Cleanup(func() { src.Close() })
			return []mesh.Option{mesh.WithServiceAccount(sa), mesh.WithIdentity(src)}
		},
	}
	return []identities{builtin, spire}
}

// rawChain returns the DER of certs.
func rawChain(certs []*x509.Certificate) [][]byte {
	out := make([][]byte, len(certs))
	for i, c := range certs {
		out[i] = c.Raw
	}
	return out
}

// securityMesh is a control plane and the workloads of one identity test.
type securityMesh struct {
	cp     *controlplane.Server
	dir    string
	src    identities
	server *instance
}

// startSecurityMesh starts a control plane with files, and a greeter of
// the given kind.
func startSecurityMesh(t *testing.T, src identities, kind serverKind, files map[string]string) *securityMesh {
	t.Helper()
	dir := meshtest.WriteConfig(t, files)
	cp := meshtest.StartControlPlane(t, dir, src.cpOptions...)
	sm := &securityMesh{cp: cp, dir: dir, src: src}
	m := startMesh(t, cp.XDSAddr(), "greeter", map[string]string{"version": "v1"}, src.workload(t, "greeter")...)
	sm.server = serveGreeter(t, m, "v1", &grpcGreeter{}, kind.opts...)
	waitRegistered(t, cp, 1)
	return sm
}

// client joins as service account sa and returns a greeter client.
func (sm *securityMesh) client(t *testing.T, sa string) (greeterpb.GreeterClient, *mesh.Mesh) {
	t.Helper()
	m := startMesh(t, sm.cp.XDSAddr(), sa, nil, sm.src.workload(t, sa)...)
	return dialGreeter(t, m), m
}

// firstReply waits until a call succeeds or fails with a status that is not
// about the client still getting its config.
func firstReply(t *testing.T, c greeterpb.GreeterClient) (*greeterpb.HelloReply, error) {
	t.Helper()
	var r *greeterpb.HelloReply
	var err error
	meshtest.WaitUntil(t, 15*time.Second, "a first answer", func() bool {
		r, err = call(t.Context(), c, "")
		return err == nil || status.Code(err) == codes.PermissionDenied
	})
	return r, err
}

// direct makes one call straight to addr with creds, bypassing xDS.
func direct(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
	defer cancel()
	_, err = greeterpb.NewGreeterClient(cc).SayHello(ctx, &greeterpb.HelloRequest{Name: "direct"})
	return err
}

const strictMesh = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: STRICT
`

const permissiveMesh = `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: istio-system
spec:
  mtls:
    mode: PERMISSIVE
`

func TestMutualTLS(t *testing.T) {
	for _, src := range identitySources(t, time.Hour, "greeter", "client", "other") {
		for _, kind := range serverKinds {
			t.Run(src.name+"/"+kind.name, func(t *testing.T) { testMutualTLS(t, src, kind) })
		}
	}
}

func testMutualTLS(t *testing.T, src identities, kind serverKind) {
	t.Run("STRICT", func(t *testing.T) {
		sm := startSecurityMesh(t, src, kind, map[string]string{"peer-authentication.yaml": strictMesh})
		c, cm := sm.client(t, "client")
		r, err := firstReply(t, c)
		if err != nil {
			t.Fatalf("an mTLS client was refused: %v", err)
		}
		if r.GetMessage() != spiffeFor("client") {
			t.Errorf("the server saw %q, want the client's SPIFFE ID", r.GetMessage())
		}
		if err := direct(t, sm.server.addr, insecure.NewCredentials()); err == nil {
			t.Error("a plaintext client was served under STRICT")
		}
		// A valid SVID of another trust domain: the server must
		// refuse it even though the client does not check the
		// server.
		other := otherTrustDomain(t)
		cfg := &tls.Config{
			InsecureSkipVerify: true,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				svid, err := other.GetX509SVID()
				if err != nil {
					return nil, err
				}
				return &tls.Certificate{Certificate: rawChain(svid.Certificates), PrivateKey: svid.PrivateKey}, nil
			},
		}
		if err := direct(t, sm.server.addr, credentials.NewTLS(cfg)); err == nil {
			t.Error("a client with an SVID from another trust domain was served")
		}
		// The server presents the greeter's identity: a client
		// that expects another refuses it.
		wrong := security.ClientTLSConfig(cm.Identity(), tlsconfig.AuthorizeID(spiffeid.RequireFromString(spiffeFor("other"))))
		if err := direct(t, sm.server.addr, credentials.NewTLS(wrong)); err == nil {
			t.Error("a client expecting sa/other accepted the greeter's server")
		}
		right := security.ClientTLSConfig(cm.Identity(), tlsconfig.AuthorizeID(spiffeid.RequireFromString(spiffeFor("greeter"))))
		if err := direct(t, sm.server.addr, credentials.NewTLS(right)); err != nil {
			t.Errorf("a client expecting sa/greeter was refused: %v", err)
		}
	})
	t.Run("PERMISSIVE", func(t *testing.T) {
		sm := startSecurityMesh(t, src, kind, map[string]string{"peer-authentication.yaml": permissiveMesh})
		c, _ := sm.client(t, "client")
		r, err := firstReply(t, c)
		if err != nil {
			t.Fatalf("an mTLS client was refused: %v", err)
		}
		if r.GetMessage() != spiffeFor("client") {
			t.Errorf("the mesh client reached the server as %q, want over mTLS as %s", r.GetMessage(), spiffeFor("client"))
		}
		if err := direct(t, sm.server.addr, insecure.NewCredentials()); err != nil {
			t.Errorf("a plaintext client was refused under PERMISSIVE: %v", err)
		}
	})
	t.Run("PERMISSIVE to STRICT cuts plaintext connections", func(t *testing.T) {
		sm := startSecurityMesh(t, src, kind, map[string]string{"peer-authentication.yaml": permissiveMesh})
		cc, err := grpc.NewClient(sm.server.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		plain := greeterpb.NewGreeterClient(cc)
		if _, err := firstReply(t, plain); err != nil {
			t.Fatalf("plaintext under PERMISSIVE: %v", err)
		}
		meshtest.WriteFile(t, sm.dir, "peer-authentication.yaml", strictMesh)
		// The server drains connections made under the old
		// Listener; the plaintext client cannot reconnect.
		meshtest.WaitUntil(t, 10*time.Second, "the plaintext connection to be refused", func() bool {
			_, err := call(t.Context(), plain, "")
			return err != nil
		})
	})
	t.Run("DestinationRule tls DISABLE", func(t *testing.T) {
		sm := startSecurityMesh(t, src, kind, map[string]string{
			"peer-authentication.yaml": permissiveMesh,
			"no-tls.yaml":              tlsRule("DISABLE"),
		})
		c, _ := sm.client(t, "client")
		r, err := firstReply(t, c)
		if err != nil {
			t.Fatal(err)
		}
		if r.GetMessage() != "plaintext" {
			t.Errorf("with tls DISABLE the client reached the server as %q, want plaintext", r.GetMessage())
		}
		// ISTIO_MUTUAL applies to new connections: gRPC-Go keeps a
		// connection's security for its life. A new client gets mTLS.
		meshtest.WriteFile(t, sm.dir, "no-tls.yaml", tlsRule("ISTIO_MUTUAL"))
		meshtest.WaitUntil(t, 5*time.Second, "a new client to use mTLS", func() bool {
			c, _ := sm.client(t, "client")
			r, err := firstReply(t, c)
			return err == nil && r.GetMessage() == spiffeFor("client")
		})
	})
}

// otherTrustDomain returns an identity issued by the CA of another
// control plane, whose trust domain is other.example.
func otherTrustDomain(t *testing.T) security.Source {
	t.Helper()
	cp := meshtest.StartControlPlane(t, meshtest.WriteConfig(t, nil), controlplane.WithTrustDomain("other.example"), controlplane.WithStateDir(t.TempDir()))
	m := startMesh(t, cp.XDSAddr(), "intruder", nil, mesh.WithTrustDomain("other.example"))
	return m.Identity()
}

func TestAuthorizationPolicy(t *testing.T) {
	for _, src := range identitySources(t, time.Hour, "greeter", "client-x", "client-y") {
		for _, kind := range serverKinds {
			t.Run(src.name+"/"+kind.name, func(t *testing.T) { testAuthorizationPolicy(t, src, kind) })
		}
	}
}

func testAuthorizationPolicy(t *testing.T, src identities, kind serverKind) {
	sm := startSecurityMesh(t, src, kind, map[string]string{
		"peer-authentication.yaml": strictMesh,
		"allow-x.yaml":             authzPolicy("allow-x", "ALLOW", "client-x"),
	})
	x, _ := sm.client(t, "client-x")
	y, _ := sm.client(t, "client-y")
	if _, err := firstReply(t, x); err != nil {
		t.Fatalf("client-x, allowed, was refused: %v", err)
	}
	_, err := firstReply(t, y)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "policy") {
		t.Fatalf("client-y, not allowed: got %v, want PermissionDenied saying it was denied by policy", err)
	}
	t.Logf("client-y was told: %s", status.Convert(err).Message())

	meshtest.WriteFile(t, sm.dir, "deny-x.yaml", authzPolicy("deny-x", "DENY", "client-x"))
	meshtest.WaitUntil(t, 5*time.Second, "the DENY policy to take effect", func() bool {
		_, err := call(t.Context(), x, "")
		return status.Code(err) == codes.PermissionDenied
	})
	_, err = call(t.Context(), x, "")
	if msg := status.Convert(err).Message(); !strings.Contains(msg, "deny") {
		t.Errorf("client-x was refused with %q, want the deny policy named", msg)
	}
}

func TestRotationWithoutFailures(t *testing.T) {
	const ttl = time.Minute
	for _, src := range identitySources(t, ttl, "greeter", "client") {
		t.Run(src.name, func(t *testing.T) {
			for _, kind := range serverKinds {
				t.Run(kind.name, func(t *testing.T) {
					t.Parallel() // each waits half a minute for its rotation
					testRotationWithoutFailures(t, src, kind, ttl)
				})
			}
		})
	}
}

func testRotationWithoutFailures(t *testing.T, src identities, kind serverKind, ttl time.Duration) {
	sm := startSecurityMesh(t, src, kind, map[string]string{"peer-authentication.yaml": strictMesh})
	c, cm := sm.client(t, "client")
	if _, err := firstReply(t, c); err != nil {
		t.Fatal(err)
	}
	first := serverSerial(t, sm.server.addr, cm.Identity())
	var calls, failed atomic.Int64
	var lastErr atomic.Value
	traffic := startLoad(t, callerFunc(func() (string, string, error) {
		time.Sleep(5 * time.Millisecond) // steady, not flat out, for a minute
		r, err := call(t.Context(), c, "")
		calls.Add(1)
		if err != nil {
			failed.Add(1)
			lastErr.Store(err)
		}
		return r.GetVersion(), r.GetInstance(), err
	}), 2)
	// Renewal is at half-life: the server presents a new
	// certificate about 30s in.
	var second *big.Int
	meshtest.WaitUntil(t, ttl, "the server's certificate to rotate", func() bool {
		second = serverSerial(t, sm.server.addr, cm.Identity())
		return second.Cmp(first) != 0
	})
	traffic.runPast(t, time.Now(), 2*time.Second, "2s of calls after the rotation") // traffic goes on across it
	traffic.end()
	t.Logf("server serial %x -> %x; %d calls, %d failed", first, second, calls.Load(), failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d of %d calls failed through a rotation, last: %v", failed.Load(), calls.Load(), lastErr.Load())
	}
}

// serverSerial returns the serial of the certificate the server at addr
// presents to a new mTLS connection.
func serverSerial(t *testing.T, addr string, src security.Source) *big.Int {
	t.Helper()
	d := &net.Dialer{Timeout: 3 * time.Second}
	conn, err := tls.DialWithDialer(d, "tcp", addr, security.ClientTLSConfig(src, tlsconfig.AuthorizeAny()))
	if err != nil {
		t.Fatalf("TLS to %s: %v", addr, err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber
}

func TestCARefusesWithoutAValidToken(t *testing.T) {
	cp, _ := startControlPlane(t, nil, controlplane.WithCAInsecureDev(false),
		controlplane.WithCAToken("right", controlplane.Identity{Namespace: "default", ServiceAccount: "greeter"}))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, token := range []string{"", "wrong"} {
		_, err := mesh.New(ctx, mesh.WithService("greeter"), mesh.WithControlPlane(cp.XDSAddr()),
			mesh.WithCAToken(token), mesh.WithLogger(meshtest.Logger()))
		if err == nil || !strings.Contains(err.Error(), "token") || !strings.Contains(err.Error(), mesh.EnvCAToken) {
			t.Errorf("token %q: got %v, want a refusal that mentions the token and %s", token, err, mesh.EnvCAToken)
		}
	}
	// A valid token for another identity cannot get this one.
	_, err := mesh.New(ctx, mesh.WithService("reviews"), mesh.WithControlPlane(cp.XDSAddr()),
		mesh.WithCAToken("right"), mesh.WithLogger(meshtest.Logger()))
	if status.Code(err) != codes.PermissionDenied {
		t.Errorf("greeter's token asking for sa/reviews: got %v, want PermissionDenied", err)
	}
}

// TestHTTPStrictRefusesKeptPlaintext: a plaintext HTTP connection made
// under PERMISSIVE and kept alive is refused once the port is STRICT: its
// next request gets 503 and the connection closes, and a new plaintext
// connection is refused.
func TestHTTPStrictRefusesKeptPlaintext(t *testing.T) {
	cp, dir := startControlPlane(t, map[string]string{"peer-authentication.yaml": permissiveMesh})
	srv := startHTTPGreeter(t, cp.XDSAddr(), "v1", nil)
	var conns atomic.Int64
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conns.Add(1)
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	get := func() (int, error) {
		resp, err := plain.Get("http://" + srv.addr + "/")
		if err != nil {
			return 0, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	meshtest.WaitUntil(t, 15*time.Second, "plaintext to be served under PERMISSIVE", func() bool {
		code, err := get()
		return err == nil && code == http.StatusOK
	})
	before := conns.Load()
	meshtest.WriteFile(t, dir, "peer-authentication.yaml", strictMesh)
	var code int
	var err error
	meshtest.WaitUntil(t, 10*time.Second, "the kept connection to be refused", func() bool {
		code, err = get()
		return err != nil || code != http.StatusOK
	})
	if err != nil || code != http.StatusServiceUnavailable || conns.Load() != before {
		t.Fatalf("the kept plaintext connection: status %d, %v, %d new connections; want 503 on the same connection", code, err, conns.Load()-before)
	}
	if code, err := get(); err == nil {
		t.Errorf("a new plaintext connection under STRICT got %d, want it refused", code)
	}
}
