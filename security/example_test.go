package security_test

import (
	"context"
	"crypto/tls"
	"fmt"
	"log"
	"net"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"

	"github.com/meshlet/meshlet/security"
)

func ExampleNewFileSource() {
	// Files as cert-manager writes them; here from a test CA.
	dir, err := os.MkdirTemp("", "certs")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ca := newTestCA("cluster.local")
	files := newPEMFiles(dir)
	files.write(ca.issue(ca.id("shop", "cart"), time.Hour), ca.bundle())

	src, err := security.NewFileSource(context.Background(), files.cert, files.key, files.bundle)
	if err != nil {
		log.Fatal(err)
	}
	defer src.Close()

	svid, err := src.GetX509SVID()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(svid.ID)
	// Output: spiffe://cluster.local/ns/shop/sa/cart
}

func ExampleServerTLSConfig() {
	ca := newTestCA("cluster.local")
	cartID, frontendID := ca.id("shop", "cart"), ca.id("shop", "frontend")
	cart, frontend := ca.source(cartID), ca.source(frontendID)

	// The cart server accepts any workload of its trust domain; the
	// frontend client accepts only the cart server.
	serverCfg := security.ServerTLSConfig(cart, tlsconfig.AuthorizeMemberOf(cartID.TrustDomain()))
	clientCfg := security.ClientTLSConfig(frontend, tlsconfig.AuthorizeID(cartID))

	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	server, client := tls.Server(a, serverCfg), tls.Client(b, clientCfg)
	done := make(chan error, 1)
	go func() { done <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		log.Fatal(err)
	}
	if err := <-done; err != nil {
		log.Fatal(err)
	}

	serverSaw, _ := x509svid.IDFromCert(server.ConnectionState().PeerCertificates[0])
	clientSaw, _ := x509svid.IDFromCert(client.ConnectionState().PeerCertificates[0])
	fmt.Println("server saw", serverSaw)
	fmt.Println("client saw", clientSaw)
	// Output:
	// server saw spiffe://cluster.local/ns/shop/sa/frontend
	// client saw spiffe://cluster.local/ns/shop/sa/cart
}

func ExampleProviderConfig() {
	ca := newTestCA("cluster.local")
	key, unregister := security.RegisterProviderSource(ca.source(ca.id("shop", "cart")))
	defer unregister()

	// The entry goes into the xDS bootstrap's certificate_providers, under
	// the instance name that the control plane's xDS resources use.
	entry := security.ProviderConfig(key)
	fmt.Println(entry["plugin_name"])
	// Output: meshlet
}
