package security_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"

	"github.com/meshlet/meshlet/security"
)

// An http.Server behind a PermissiveListener answers plaintext and mTLS
// clients on one port, sees the mTLS client's SPIFFE ID, and refuses
// plaintext once strict.
func TestPermissiveListener(t *testing.T) {
	ca := newTestCA("example.org")
	serverID, clientID := ca.id("default", "web"), ca.id("default", "caller")
	server, client := ca.source(serverID), ca.source(clientID)

	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var strict atomic.Bool
	lis := security.PermissiveListener(inner, security.ServerTLSConfig(server, nil), strict.Load)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		who := "plaintext"
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			who = r.TLS.PeerCertificates[0].URIs[0].String()
		}
		fmt.Fprint(w, who)
	})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(lis)
	}()
	defer func() {
		srv.Close()
		<-done
	}()

	get := func(c *http.Client, scheme string) (string, error) {
		resp, err := c.Get(scheme + "://" + inner.Addr().String() + "/")
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	plain := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	mtls := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DisableKeepAlives: true,
		TLSClientConfig:   security.ClientTLSConfig(client, tlsconfig.AuthorizeID(serverID)),
	}}

	if got, err := get(plain, "http"); err != nil || got != "plaintext" {
		t.Errorf("plaintext client under PERMISSIVE: %q, %v", got, err)
	}
	if got, err := get(mtls, "https"); err != nil || got != clientID.String() {
		t.Errorf("mTLS client under PERMISSIVE: %q, %v; want %s", got, err, clientID)
	}
	strict.Store(true)
	if _, err := get(plain, "http"); err == nil {
		t.Error("a plaintext client was served under STRICT")
	}
	if got, err := get(mtls, "https"); err != nil || got != clientID.String() {
		t.Errorf("mTLS client under STRICT: %q, %v", got, err)
	}

	// A silent client does not hold up others.
	silent, err := net.Dial("tcp", inner.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if got, err := get(mtls, "https"); err != nil || got != clientID.String() {
		t.Errorf("with a silent client connected: %q, %v", got, err)
	}
}
