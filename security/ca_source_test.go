package security_test

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/internal/capb"
	"github.com/meshlet/meshlet/meshtest"
	"github.com/meshlet/meshlet/security"
)

// caServer is a tiny meshlet CA: it checks the bearer token and signs the
// CSR with a test CA for the TTL asked for.
type caServer struct {
	capb.UnimplementedCertificateAuthorityServer
	ca    *testCA
	token string

	// issueFor, when set, replaces the ID in the certificate.
	issueFor spiffeid.ID
	// fail, when set, is asked first about call n (from 1); an error it
	// returns is the call's answer.
	fail func(n int32) error

	calls atomic.Int32
	mu    sync.Mutex
	ttls  []int64
}

func (s *caServer) Sign(ctx context.Context, req *capb.SignRequest) (*capb.SignResponse, error) {
	n := s.calls.Add(1)
	if s.fail != nil {
		if err := s.fail(n); err != nil {
			return nil, err
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Bearer "+s.token {
		return nil, status.Errorf(codes.PermissionDenied, "token refused: %q is not a valid token", strings.TrimPrefix(strings.Join(got, ","), "Bearer "))
	}
	csr, err := x509.ParseCertificateRequest(req.GetCsr())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad CSR: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "bad CSR signature: %v", err)
	}
	if len(csr.URIs) != 1 {
		return nil, status.Errorf(codes.InvalidArgument, "CSR has %d URI SANs, want 1", len(csr.URIs))
	}
	id, err := spiffeid.FromURI(csr.URIs[0])
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "CSR URI SAN: %v", err)
	}
	if !s.issueFor.IsZero() {
		id = s.issueFor
	}
	ttl := time.Hour
	if req.GetTtlSeconds() > 0 {
		ttl = time.Duration(req.GetTtlSeconds()) * time.Second
	}
	s.mu.Lock()
	s.ttls = append(s.ttls, req.GetTtlSeconds())
	s.mu.Unlock()
	now := time.Now()
	cert := s.ca.sign(csr.PublicKey, id, now, now.Add(ttl))
	return &capb.SignResponse{
		CertChain:   [][]byte{cert.Raw},
		TrustBundle: [][]byte{s.ca.cert.Raw},
		TrustDomain: s.ca.td.Name(),
	}, nil
}

// startCA serves srv on 127.0.0.1 and returns a connection to it.
func startCA(t *testing.T, srv *caServer) *grpc.ClientConn {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	capb.RegisterCertificateAuthorityServer(gs, srv)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		conn.Close()
		gs.Stop()
		<-done
	})
	return conn
}

func TestCASourceFirstSVID(t *testing.T) {
	ca := newTestCA("cluster.local")
	srv := &caServer{ca: ca, token: "s3cret", fail: failCalls(1, 2)}
	conn := startCA(t, srv)
	id := ca.id("shop", "cart")

	src, err := security.NewCASource(t.Context(), security.CAConfig{
		Conn: conn, Token: "s3cret", ID: id, TTL: 90 * time.Minute, Roots: ca.bundle(),
	})
	if err != nil {
		t.Fatalf("NewCASource: %v", err)
	}
	defer src.Close()

	svid, err := src.GetX509SVID()
	if err != nil {
		t.Fatal(err)
	}
	if svid.ID != id {
		t.Errorf("ID = %s, want %s", svid.ID, id)
	}
	leaf := svid.Certificates[0]
	if got := leaf.NotAfter.Sub(leaf.NotBefore); got != 90*time.Minute {
		t.Errorf("lifetime = %s, want 1h30m", got)
	}
	if got, want := srv.calls.Load(), int32(3); got != want {
		t.Errorf("Sign calls = %d, want %d (two Unavailable, then success)", got, want)
	}
	srv.mu.Lock()
	if srv.ttls[0] != 5400 {
		t.Errorf("ttl_seconds = %d, want 5400", srv.ttls[0])
	}
	srv.mu.Unlock()
	if _, _, err := x509svid.Verify(svid.Certificates, src); err != nil {
		t.Errorf("SVID does not verify against the source's bundle: %v", err)
	}
}

func TestCASourceRenewsAtHalfLife(t *testing.T) {
	ca := newTestCA("cluster.local")
	srv := &caServer{ca: ca, token: "t"}
	conn := startCA(t, srv)
	id := ca.id("shop", "cart")

	src, err := security.NewCASource(t.Context(), security.CAConfig{
		Conn: conn, Token: "t", ID: id, TTL: 2 * time.Second, Roots: ca.bundle(),
		Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatalf("NewCASource: %v", err)
	}
	defer src.Close()
	first, _ := src.GetX509SVID()
	firstSerial := first.Certificates[0].SerialNumber.String()

	// A TLS server that presents the CASource's SVID, and a connection made
	// before the rotation.
	client := ca.source(ca.id("shop", "frontend"))
	addr := startTLSEcho(t, security.ServerTLSConfig(src, tlsconfig.AuthorizeAny()))
	dial := func() (*tls.Conn, string) {
		c, err := tls.Dial("tcp", addr, security.ClientTLSConfig(client, tlsconfig.AuthorizeID(id)))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		return c, c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before, served := dial()
	defer before.Close()
	if served != firstSerial {
		t.Fatalf("server presented serial %s, want %s", served, firstSerial)
	}

	start := time.Now()
	var next string
	meshtest.WaitUntil(t, 4*time.Second, "the renewal of a 2s SVID", func() bool {
		svid, _ := src.GetX509SVID()
		next = svid.Certificates[0].SerialNumber.String()
		return next != firstSerial
	})
	// Half of 2 s, with the test's polling on top.
	if took := time.Since(start); took > 1500*time.Millisecond {
		t.Errorf("renewed after %s, want about 1s (half-life)", took)
	}
	if calls := srv.calls.Load(); calls > 3 {
		t.Errorf("%d Sign calls for one renewal", calls)
	}
	second, _ := src.GetX509SVID()
	if second.PrivateKey.Public().(interface{ Equal(crypto.PublicKey) bool }).Equal(first.PrivateKey.Public()) {
		t.Error("the renewed SVID has the old key")
	}

	// The old connection still works; a new one sees the new certificate.
	echo(t, before, "still here")
	after, served := dial()
	defer after.Close()
	if served != next {
		t.Errorf("new connection: server presented serial %s, want the renewed %s", served, next)
	}
	echo(t, after, "hello")
}

// failCalls fails the calls numbered calls with Unavailable.
func failCalls(calls ...int32) func(int32) error {
	return func(n int32) error {
		if slices.Contains(calls, n) {
			return status.Error(codes.Unavailable, "CA warming up")
		}
		return nil
	}
}

func TestCASourceRenewalRetries(t *testing.T) {
	ca := newTestCA("cluster.local")
	// The first renewal attempts fail; the SVID is still valid, so the
	// source retries until the CA answers.
	srv := &caServer{ca: ca, token: "t", fail: failCalls(2, 3)}
	conn := startCA(t, srv)
	var logs meshtest.LogBuffer
	src, err := security.NewCASource(t.Context(), security.CAConfig{
		Conn: conn, Token: "t", ID: ca.id("shop", "cart"), TTL: 3 * time.Second, Roots: ca.bundle(),
		Log: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatalf("NewCASource: %v", err)
	}
	defer src.Close()
	first := currentSerial(t, src)
	defer logOnFailure(t, &logs)
	meshtest.WaitUntil(t, 4*time.Second, "a renewal after two failures", func() bool { return currentSerial(t, src) != first })
	if got := srv.calls.Load(); got != 4 {
		t.Errorf("Sign calls = %d, want 4 (first, two failures, success)", got)
	}
	if got := strings.Count(logs.String(), "renewal failed; the current SVID is still valid"); got != 2 {
		t.Errorf("%d renewal failures logged, want 2; logs:\n%s", got, logs.String())
	}
}

func TestCASourceRefusedToken(t *testing.T) {
	ca := newTestCA("cluster.local")
	srv := &caServer{ca: ca, token: "right"}
	conn := startCA(t, srv)

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := security.NewCASource(ctx, security.CAConfig{Conn: conn, Token: "wrong", ID: ca.id("shop", "cart"), Roots: ca.bundle()})
	if err == nil {
		t.Fatal("NewCASource: got no error")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), `token refused: "wrong" is not a valid token`) {
		t.Errorf("error %q does not carry the CA's message", err)
	}
	if got := status.Code(err); got != codes.PermissionDenied {
		t.Errorf("status.Code(err) = %s, want PermissionDenied", got)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("a refusal took %s to report; it should not be retried", took)
	}
}

func TestCASourceRefusesWrongID(t *testing.T) {
	ca := newTestCA("cluster.local")
	srv := &caServer{ca: ca, token: "t", issueFor: ca.id("kube-system", "admin")}
	conn := startCA(t, srv)

	_, err := security.NewCASource(t.Context(), security.CAConfig{Conn: conn, Token: "t", ID: ca.id("shop", "cart"), Roots: ca.bundle()})
	if err == nil {
		t.Fatal("NewCASource accepted a certificate for another ID")
	}
	t.Logf("error: %v", err)
	for _, want := range []string{"spiffe://cluster.local/ns/kube-system/sa/admin", "spiffe://cluster.local/ns/shop/sa/cart was asked for"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not contain %q", err, want)
		}
	}
}

func TestCASourceContextEnds(t *testing.T) {
	ca := newTestCA("cluster.local")
	srv := &caServer{ca: ca, token: "t", fail: func(int32) error { return status.Error(codes.Unavailable, "CA warming up") }}
	conn := startCA(t, srv)

	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := security.NewCASource(ctx, security.CAConfig{Conn: conn, Token: "t", ID: ca.id("shop", "cart"), Roots: ca.bundle()})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error = %v, want one that wraps context.DeadlineExceeded", err)
	}
	if !strings.Contains(err.Error(), "CA warming up") {
		t.Errorf("error %q does not carry the last failure", err)
	}
}

func TestCASourceConfigErrors(t *testing.T) {
	ca := newTestCA("cluster.local")
	conn := startCA(t, &caServer{ca: ca})
	for _, cfg := range []security.CAConfig{
		{ID: ca.id("a", "b")},
		{Conn: conn},
		{Conn: conn, ID: ca.id("a", "b"), TTL: -time.Second, Roots: ca.bundle()},
		{Conn: conn, ID: ca.id("a", "b")}, // no roots to check the answer against
	} {
		if _, err := security.NewCASource(t.Context(), cfg); err == nil {
			t.Errorf("NewCASource(%+v): got no error", cfg)
		}
	}
}

// startTLSEcho serves an echo over TLS with cfg on 127.0.0.1 and returns
// its address.
func startTLSEcho(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	lis, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
	})
	return lis.Addr().String()
}

func echo(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo = %q, want %q", buf, msg)
	}
}

// TestCASourceRefusesPlantedRoot: a CA (or a man in the middle) that
// answers with an SVID and a bundle of its own is refused: the SVID must
// chain to the roots the workload holds out of band.
func TestCASourceRefusesPlantedRoot(t *testing.T) {
	trusted := newTestCA("cluster.local")
	mitm := newTestCA("cluster.local")
	conn := startCA(t, &caServer{ca: mitm, token: "t"})
	_, err := security.NewCASource(t.Context(), security.CAConfig{Conn: conn, Token: "t", ID: mitm.id("shop", "cart"), Roots: trusted.bundle()})
	if err == nil || !strings.Contains(err.Error(), "does not chain to the roots the control plane is trusted with") {
		t.Fatalf("error = %v, want the SVID refused for not chaining to the held roots", err)
	}
}
