package security_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshlet/meshlet/security"
)

// idServer is a TLS server on 127.0.0.1 that answers each connection with
// the SPIFFE ID of the client, and records failed handshakes.
type idServer struct {
	addr   string
	errors chan error
}

func startIDServer(t *testing.T, cfg *tls.Config) *idServer {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &idServer{addr: lis.Addr().String(), errors: make(chan error, 16)}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			raw, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				c := tls.Server(raw, cfg)
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.Handshake(); err != nil {
					s.errors <- err
					return
				}
				id, err := x509svid.IDFromCert(c.ConnectionState().PeerCertificates[0])
				if err != nil {
					s.errors <- err
					return
				}
				_, _ = c.Write([]byte(id.String() + "\n"))
				// Wait for the client to close, so that it reads the
				// session ticket sent after the handshake.
				_, _ = c.Read(make([]byte, 1))
			}()
		}
	}()
	t.Cleanup(func() {
		lis.Close()
		wg.Wait()
	})
	return s
}

// call connects with cfg and returns the ID the server saw, and whether the
// session was resumed.
func (s *idServer) call(cfg *tls.Config) (id string, resumed bool, err error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", s.addr, cfg)
	if err != nil {
		return "", false, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", false, err
	}
	return strings.TrimSpace(line), c.ConnectionState().DidResume, nil
}

func (s *idServer) lastError(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errors:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("the server recorded no handshake error")
		return nil
	}
}

func TestTLSConfigs(t *testing.T) {
	ca := newTestCA("example.org")
	serverID, clientID, otherID := ca.id("shop", "cart"), ca.id("shop", "frontend"), ca.id("shop", "payments")
	server := ca.source(serverID)
	client := ca.source(clientID)
	srv := startIDServer(t, security.ServerTLSConfig(server, tlsconfig.AuthorizeMemberOf(ca.td)))

	t.Run("client and server authorized", func(t *testing.T) {
		got, _, err := srv.call(security.ClientTLSConfig(client, tlsconfig.AuthorizeID(serverID)))
		if err != nil {
			t.Fatal(err)
		}
		if got != clientID.String() {
			t.Errorf("server saw %q, want %q", got, clientID)
		}
	})

	t.Run("client expecting another server ID refuses", func(t *testing.T) {
		_, _, err := srv.call(security.ClientTLSConfig(client, tlsconfig.AuthorizeID(otherID)))
		if err == nil {
			t.Fatal("the client accepted the wrong server")
		}
		if !strings.Contains(err.Error(), serverID.String()) {
			t.Errorf("error %q does not name the server's ID", err)
		}
		srv.lastError(t) // the server sees the client's alert
	})

	t.Run("client from another trust domain is refused", func(t *testing.T) {
		other := newTestCA("other.org")
		stranger := other.source(other.id("shop", "frontend"))
		// The stranger trusts the server's CA too, so only the server's
		// check can fail.
		stranger.bundle = ca.bundle()
		if _, _, err := srv.call(security.ClientTLSConfig(stranger, tlsconfig.AuthorizeID(serverID))); err == nil {
			t.Fatal("the server accepted a client of other.org")
		}
		err := srv.lastError(t)
		if !strings.Contains(err.Error(), "other.org") {
			t.Errorf("server error %q does not name the trust domain", err)
		}
	})

	t.Run("client of the same CA but an unauthorized ID is refused", func(t *testing.T) {
		srv := startIDServer(t, security.ServerTLSConfig(server, tlsconfig.AuthorizeID(otherID)))
		if _, _, err := srv.call(security.ClientTLSConfig(client, tlsconfig.AuthorizeID(serverID))); err == nil {
			t.Fatal("the server accepted an unauthorized client")
		}
		if err := srv.lastError(t); !strings.Contains(err.Error(), clientID.String()) {
			t.Errorf("server error %q does not name the client", err)
		}
	})

	t.Run("nil authorizer: only the server's own trust domain", func(t *testing.T) {
		other := newTestCA("other.org")
		stranger := other.source(other.id("shop", "frontend"))
		stranger.bundle = ca.bundle()
		// The server trusts other.org's CA (federation), so the stranger's
		// certificate verifies; the nil authorizer still refuses it.
		federated := ca.source(serverID)
		federated.bundle = x509bundle.NewSet(ca.bundle(), other.bundle())
		strict := startIDServer(t, security.ServerTLSConfig(federated, nil))
		if _, _, err := strict.call(security.ClientTLSConfig(stranger, tlsconfig.AuthorizeID(serverID))); err == nil {
			t.Fatal("the nil authorizer accepted other.org")
		}
		if err := strict.lastError(t); !strings.Contains(err.Error(), `not in trust domain "example.org"`) {
			t.Errorf("server error %q, want the authorizer's", err)
		}
		if got, _, err := strict.call(security.ClientTLSConfig(client, tlsconfig.AuthorizeID(serverID))); err != nil || got != clientID.String() {
			t.Errorf("own trust domain: got %q, %v", got, err)
		}
		open := startIDServer(t, security.ServerTLSConfig(federated, tlsconfig.AuthorizeAny()))
		if got, _, err := open.call(security.ClientTLSConfig(stranger, tlsconfig.AuthorizeID(serverID))); err != nil || got != stranger.svid.ID.String() {
			t.Errorf("AuthorizeAny with a federated bundle: got %q, %v", got, err)
		}
	})

	t.Run("client without a certificate is refused", func(t *testing.T) {
		if _, _, err := srv.call(&tls.Config{InsecureSkipVerify: true}); err == nil {
			t.Fatal("the server accepted a client without a certificate")
		}
		srv.lastError(t)
	})
}

// TestTLSConfigsReadSourcePerHandshake checks that a rotated SVID is used
// from the next handshake, and that a resumed session is verified against
// the current bundle.
func TestTLSConfigsReadSourcePerHandshake(t *testing.T) {
	ca := newTestCA("example.org")
	serverID, clientID := ca.id("shop", "cart"), ca.id("shop", "frontend")
	server := ca.source(serverID)
	client := ca.source(clientID)
	srv := startIDServer(t, security.ServerTLSConfig(server, nil))

	clientCfg := security.ClientTLSConfig(client, tlsconfig.AuthorizeID(serverID))
	clientCfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	if _, resumed, err := srv.call(clientCfg); err != nil || resumed {
		t.Fatalf("first call: resumed=%v err=%v", resumed, err)
	}
	if _, resumed, err := srv.call(clientCfg); err != nil || !resumed {
		t.Fatalf("second call: resumed=%v err=%v; want a resumed session", resumed, err)
	}

	// The server's SVID rotates; the next full handshake presents it.
	server.set(ca.issue(serverID, time.Hour), ca.bundle())
	c, err := tls.Dial("tcp", srv.addr, security.ClientTLSConfig(client, tlsconfig.AuthorizeID(serverID)))
	if err != nil {
		t.Fatal(err)
	}
	got := c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	c.Close()
	if want := currentSerial(t, server); got != want {
		t.Errorf("server presented serial %s after rotation, want %s", got, want)
	}

	// The server's trust bundle moves to a new CA: the old session, which
	// the client still holds, must not be resumed into an accepted
	// connection.
	newCA := newTestCA("example.org")
	serverSVID := must(server.GetX509SVID())
	server.set(serverSVID, x509bundle.FromX509Authorities(ca.td, []*x509.Certificate{newCA.cert, ca.cert}))
	if _, resumed, err := srv.call(clientCfg); err != nil || !resumed {
		t.Fatalf("with both CAs trusted: resumed=%v err=%v; want a resumed session", resumed, err)
	}
	server.set(serverSVID, newCA.bundle())
	if _, resumed, err := srv.call(clientCfg); err == nil {
		t.Fatalf("a session of a no longer trusted client was accepted (resumed=%v)", resumed)
	}
	if err := srv.lastError(t); !strings.Contains(err.Error(), "unknown authority") {
		t.Errorf("server error %q, want one about the unknown authority", err)
	}
}

// TestTLSConfigsWithNetHTTP serves HTTPS with ServerTLSConfig and calls it
// with ClientTLSConfig in an http.Transport, over HTTP/1.1 and HTTP/2.
func TestTLSConfigsWithNetHTTP(t *testing.T) {
	ca := newTestCA("example.org")
	serverID, clientID := ca.id("shop", "cart"), ca.id("shop", "frontend")
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: security.ServerTLSConfig(ca.source(serverID), tlsconfig.AuthorizeID(clientID)),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := x509svid.IDFromCert(r.TLS.PeerCertificates[0])
			if err != nil {
				http.Error(w, err.Error(), http.StatusForbidden)
				return
			}
			fmt.Fprintf(w, "%s %s", r.Proto, id)
		}),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.ServeTLS(lis, "", "")
	}()
	defer func() {
		srv.Close()
		<-done
	}()

	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{
			TLSClientConfig:   security.ClientTLSConfig(ca.source(clientID), tlsconfig.AuthorizeID(serverID)),
			ForceAttemptHTTP2: h2,
		}
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://" + lis.Addr().String() + "/")
		if err != nil {
			t.Fatalf("GET (h2=%v): %v", h2, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		want := "HTTP/1.1 " + clientID.String()
		if h2 {
			want = "HTTP/2.0 " + clientID.String()
		}
		if string(body) != want {
			t.Errorf("body = %q, want %q", body, want)
		}
	}
}
