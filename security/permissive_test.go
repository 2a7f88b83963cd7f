package security_test

import (
	"context"
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/security"
)

// authRecorder is a unary interceptor that keeps the AuthInfo of each call.
type authRecorder struct {
	mu    sync.Mutex
	infos []credentials.AuthInfo
}

func (r *authRecorder) intercept(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	p, _ := peer.FromContext(ctx)
	r.mu.Lock()
	r.infos = append(r.infos, p.AuthInfo)
	r.mu.Unlock()
	return handler(ctx, req)
}

func (r *authRecorder) last() credentials.AuthInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.infos) == 0 {
		return nil
	}
	return r.infos[len(r.infos)-1]
}

// startPermissive serves the health service with PermissiveCredentials on
// 127.0.0.1 and returns its address.
func startPermissive(t *testing.T, src security.Source, rec *authRecorder, opts ...grpc.ServerOption) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts = append(opts, grpc.Creds(security.PermissiveCredentials(src)))
	if rec != nil {
		opts = append(opts, grpc.UnaryInterceptor(rec.intercept))
	}
	gs := grpc.NewServer(opts...)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = gs.Serve(lis)
	}()
	t.Cleanup(func() {
		gs.Stop()
		<-done
	})
	return lis.Addr().String()
}

func checkHealth(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestPermissiveCredentials(t *testing.T) {
	ca := newTestCA("cluster.local")
	serverID, clientID := ca.id("shop", "cart"), ca.id("shop", "frontend")
	rec := &authRecorder{}
	addr := startPermissive(t, ca.source(serverID), rec)

	t.Run("plaintext", func(t *testing.T) {
		if err := checkHealth(t, addr, insecure.NewCredentials()); err != nil {
			t.Fatalf("plaintext Check: %v", err)
		}
		info := rec.last()
		if info == nil || info.AuthType() != "insecure" {
			t.Fatalf("AuthInfo = %#v, want insecure's", info)
		}
		if _, ok := info.(credentials.TLSInfo); ok {
			t.Error("a plaintext call has TLSInfo")
		}
	})

	t.Run("mTLS", func(t *testing.T) {
		creds := credentials.NewTLS(security.ClientTLSConfig(ca.source(clientID), tlsconfig.AuthorizeID(serverID)))
		if err := checkHealth(t, addr, creds); err != nil {
			t.Fatalf("mTLS Check: %v", err)
		}
		info, ok := rec.last().(credentials.TLSInfo)
		if !ok {
			t.Fatalf("AuthInfo = %#v, want credentials.TLSInfo", rec.last())
		}
		if info.SPIFFEID == nil || info.SPIFFEID.String() != clientID.String() {
			t.Errorf("TLSInfo.SPIFFEID = %v, want %s", info.SPIFFEID, clientID)
		}
		if n := len(info.State.PeerCertificates); n == 0 {
			t.Error("TLSInfo.State has no peer certificates")
		}
		if info.SecurityLevel != credentials.PrivacyAndIntegrity {
			t.Errorf("SecurityLevel = %v, want PrivacyAndIntegrity", info.SecurityLevel)
		}
	})

	t.Run("TLS client of another trust domain", func(t *testing.T) {
		other := newTestCA("other.org")
		stranger := other.source(other.id("shop", "frontend"))
		stranger.bundle = ca.bundle()
		err := checkHealth(t, addr, credentials.NewTLS(security.ClientTLSConfig(stranger, tlsconfig.AuthorizeID(serverID))))
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Check from other.org: %v, want Unavailable", err)
		}
	})

	t.Run("TLS client without a certificate", func(t *testing.T) {
		err := checkHealth(t, addr, credentials.NewTLS(&tls.Config{InsecureSkipVerify: true}))
		if status.Code(err) != codes.Unavailable {
			t.Errorf("Check without a client certificate: %v, want Unavailable", err)
		}
	})
}

// TestPermissiveCredentialsSilentClient checks that a client that connects
// and sends nothing is dropped when grpc.Server's handshake deadline
// passes.
func TestPermissiveCredentialsSilentClient(t *testing.T) {
	ca := newTestCA("cluster.local")
	addr := startPermissive(t, ca.source(ca.id("shop", "cart")), nil, grpc.ConnectionTimeout(300*time.Millisecond))

	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("the server sent something to a silent client")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatal("the server kept a silent client's connection open for 10s")
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("the silent client was dropped after %s, want about 300ms", took)
	}
}

func TestPermissiveCredentialsClientSide(t *testing.T) {
	ca := newTestCA("cluster.local")
	creds := security.PermissiveCredentials(ca.source(ca.id("shop", "cart")))
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, _, err := creds.ClientHandshake(t.Context(), "x", a); err == nil {
		t.Error("ClientHandshake: got no error")
	}
	if got := creds.Info().SecurityProtocol; got != "tls" {
		t.Errorf("Info().SecurityProtocol = %q, want tls", got)
	}
	if creds.Clone() == nil {
		t.Error("Clone returned nil")
	}
}
