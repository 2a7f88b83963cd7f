package ca_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshlet/meshlet/controlplane/internal/ca"
	"github.com/meshlet/meshlet/internal/capb"
	"github.com/meshlet/meshlet/meshtest"
)

const (
	tokenA = "token-for-a-7f3c9e"
	idA    = "spiffe://cluster.local/ns/default/sa/a"
	idB    = "spiffe://cluster.local/ns/default/sa/b"
)

var identityA = ca.Identity{Namespace: "default", ServiceAccount: "a"}

// fixedNow returns a clock stopped at a whole second near the real time, so
// that certificates issued at it verify now and their times compare
// exactly (X.509 times have a resolution of one second).
func fixedNow() (time.Time, func() time.Time) {
	t0 := time.Now().Truncate(time.Second)
	return t0, func() time.Time { return t0 }
}

func TestSignIssuesSVID(t *testing.T) {
	t0, now := fixedNow()
	log, logs := meshtest.CaptureLog()
	c := newCA(t, ca.Config{Tokens: map[string]ca.Identity{tokenA: identityA}, Now: now, Log: log})
	client := serve(t, c)

	tests := []struct {
		name    string
		ttl     int64
		wantTTL time.Duration
	}{
		{"default", 0, time.Hour},
		{"asked", 600, 10 * time.Minute},
		{"capped by the default TTL", int64((48 * time.Hour).Seconds()), time.Hour},
		{"huge", 1 << 62, time.Hour},
	}
	serials := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := newKey(t)
			resp, err := sign(t, client, tokenA, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idA}}), TtlSeconds: tt.ttl})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if got := resp.GetTrustDomain(); got != "cluster.local" {
				t.Errorf("trust_domain = %q, want cluster.local", got)
			}
			if len(resp.GetCertChain()) != 1 {
				t.Errorf("cert_chain has %d certificates, want 1 (leaf signed by the root)", len(resp.GetCertChain()))
			}
			if len(resp.GetTrustBundle()) != 1 || string(resp.GetTrustBundle()[0]) != string(c.Bundle()[0].Raw) {
				t.Errorf("trust_bundle is not Bundle()")
			}
			svid := parseSVID(t, resp, key, c.Bundle(), t0)
			if got := svid.ID.String(); got != idA {
				t.Errorf("SPIFFE ID = %s, want %s", got, idA)
			}
			leaf := svid.Certificates[0]
			if got := leaf.NotAfter.Sub(t0); got != tt.wantTTL {
				t.Errorf("TTL = %v, want %v", got, tt.wantTTL)
			}
			if got := t0.Sub(leaf.NotBefore); got != time.Minute {
				t.Errorf("NotBefore = now - %v, want now - 1m", got)
			}
			checkLeaf(t, leaf)
			if serials[leaf.SerialNumber.String()] {
				t.Errorf("serial %s issued twice", leaf.SerialNumber)
			}
			serials[leaf.SerialNumber.String()] = true
			if !strings.Contains(logs.String(), "serial="+leaf.SerialNumber.Text(16)) {
				t.Errorf("signing not logged with its serial; log:\n%s", logs)
			}
		})
	}
	if strings.Contains(logs.String(), tokenA) {
		t.Errorf("the log holds the token:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "level=INFO msg=\"ca: signed\" spiffe_id="+idA) {
		t.Errorf("signing not logged at Info with the SPIFFE ID; log:\n%s", logs)
	}
}

// checkLeaf checks the shape of an issued leaf.
func checkLeaf(t *testing.T, leaf *x509.Certificate) {
	t.Helper()
	if leaf.IsCA {
		t.Error("leaf is a CA")
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; leaf.KeyUsage != want {
		t.Errorf("KeyUsage = %v, want %v", leaf.KeyUsage, want)
	}
	if fmt.Sprint(leaf.ExtKeyUsage) != fmt.Sprint([]x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}) {
		t.Errorf("ExtKeyUsage = %v, want serverAuth, clientAuth", leaf.ExtKeyUsage)
	}
	if len(leaf.URIs) != 1 || len(leaf.DNSNames) != 0 || len(leaf.IPAddresses) != 0 || len(leaf.EmailAddresses) != 0 {
		t.Errorf("SANs: URIs %v, DNS %v, IP %v, email %v; want the one URI", leaf.URIs, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
	}
	if got := leaf.Subject.Organization; len(got) != 1 || got[0] != "meshlet" {
		t.Errorf("subject O = %v, want [meshlet]", got)
	}
	if leaf.SerialNumber.BitLen() < 64 || leaf.SerialNumber.BitLen() > 128 {
		t.Errorf("serial has %d bits, want a random 128-bit number", leaf.SerialNumber.BitLen())
	}
}

func TestSignRefuses(t *testing.T) {
	log, logs := meshtest.CaptureLog()
	c := newCA(t, ca.Config{Tokens: map[string]ca.Identity{tokenA: identityA}, Log: log})
	client := serve(t, c)
	key := newKey(t)
	good := makeCSR(t, key, csrSpec{uris: []string{idA}})
	badSig := append([]byte(nil), good...)
	badSig[len(badSig)-1] ^= 0xff

	rsaKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		token     string
		csr       []byte
		ttl       int64
		wantCode  codes.Code
		wantParts []string
	}{
		{"no token", "", good, 0, codes.Unauthenticated, []string{"ca: no valid token", "authorization: Bearer"}},
		{"wrong token", "wrong-token-42", good, 0, codes.Unauthenticated, []string{"ca: no valid token", "not known"}},
		{"token for A asks for B", tokenA, makeCSR(t, key, csrSpec{uris: []string{idB}}), 0, codes.PermissionDenied,
			[]string{"ca: token for ns/default/sa/a cannot ask for " + idB}},
		{"other trust domain", tokenA, makeCSR(t, key, csrSpec{uris: []string{"spiffe://example.org/ns/default/sa/a"}}), 0, codes.PermissionDenied,
			[]string{"cluster.local", "spiffe://example.org/ns/default/sa/a"}},
		{"two URIs", tokenA, makeCSR(t, key, csrSpec{uris: []string{idA, idB}}), 0, codes.InvalidArgument, []string{"2 URI SANs"}},
		{"no URI", tokenA, makeCSR(t, key, csrSpec{}), 0, codes.InvalidArgument, []string{"0 URI SANs"}},
		{"DNS SAN", tokenA, makeCSR(t, key, csrSpec{uris: []string{idA}, dns: []string{"a.default.svc"}}), 0, codes.InvalidArgument, []string{"DNS SANs", "a.default.svc"}},
		{"not SPIFFE", tokenA, makeCSR(t, key, csrSpec{uris: []string{"https://cluster.local/ns/default/sa/a"}}), 0, codes.InvalidArgument, []string{"not a SPIFFE ID"}},
		{"not ns/sa", tokenA, makeCSR(t, key, csrSpec{uris: []string{"spiffe://cluster.local/workload/a"}}), 0, codes.InvalidArgument, []string{"/ns/<namespace>/sa/<service-account>"}},
		{"garbage CSR", tokenA, []byte("this is not a CSR"), 0, codes.InvalidArgument, []string{"PKCS #10"}},
		{"PEM CSR", tokenA, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: good}), 0, codes.InvalidArgument, []string{"DER"}},
		{"empty CSR", tokenA, nil, 0, codes.InvalidArgument, []string{"no CSR"}},
		{"bad CSR signature", tokenA, badSig, 0, codes.InvalidArgument, []string{"signature"}},
		{"weak RSA key", tokenA, makeCSR(t, rsaKey, csrSpec{uris: []string{idA}}), 0, codes.InvalidArgument, []string{"1024 bits"}},
		{"negative TTL", tokenA, good, -5, codes.InvalidArgument, []string{"negative"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := sign(t, client, tt.token, &capb.SignRequest{Csr: tt.csr, TtlSeconds: tt.ttl})
			if err == nil {
				t.Fatalf("Sign succeeded (%d certificates), want %v", len(resp.GetCertChain()), tt.wantCode)
			}
			st := status.Convert(err)
			if st.Code() != tt.wantCode {
				t.Errorf("code = %v (%s), want %v", st.Code(), st.Message(), tt.wantCode)
			}
			wantErr(t, err, tt.wantParts...)
			if tt.token != "" && strings.Contains(st.Message(), tt.token) {
				t.Errorf("the error echoes the token: %s", st.Message())
			}
		})
	}
	if strings.Contains(logs.String(), "wrong-token-42") || strings.Contains(logs.String(), tokenA) {
		t.Errorf("the log holds a token:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "ca: refused") {
		t.Errorf("refusals are not logged:\n%s", logs)
	}
}

func TestSignMalformedAuthorization(t *testing.T) {
	c := newCA(t, ca.Config{Tokens: map[string]ca.Identity{tokenA: identityA}, InsecureDev: true})
	client := serve(t, c)
	key := newKey(t)
	// sign adds "Bearer "; "Basic x" has the wrong scheme.
	for _, auth := range []string{"Basic " + tokenA, tokenA, "Bearer"} {
		ctx := t.Context()
		ctx = metadataCtx(ctx, auth)
		_, err := client.Sign(ctx, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idA}})})
		if got := status.Code(err); got != codes.Unauthenticated {
			t.Errorf("authorization %q: code %v (%v), want Unauthenticated even in insecure development mode", auth, got, err)
		}
	}
}

func TestInsecureDev(t *testing.T) {
	t0, now := fixedNow()
	log, logs := meshtest.CaptureLog()
	c := newCA(t, ca.Config{InsecureDev: true, Tokens: map[string]ca.Identity{tokenA: identityA}, Now: now, Log: log})
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "insecure development mode: the CA signs any identity without a token; never use this outside loopback demos") {
		t.Errorf("New did not warn about insecure development mode; log:\n%s", logs)
	}
	client := serve(t, c)

	key := newKey(t)
	resp, err := sign(t, client, "", &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idB}})})
	if err != nil {
		t.Fatalf("Sign without a token: %v", err)
	}
	if got := parseSVID(t, resp, key, c.Bundle(), t0).ID.String(); got != idB {
		t.Errorf("SPIFFE ID = %s, want %s", got, idB)
	}
	if !strings.Contains(logs.String(), `level=WARN msg="ca: signed without a token (insecure development mode)" spiffe_id=`+idB) {
		t.Errorf("signing without a token did not log a WARN; log:\n%s", logs)
	}

	// A token, when sent, still binds the identity.
	_, err = sign(t, client, tokenA, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idB}})})
	if got := status.Code(err); got != codes.PermissionDenied {
		t.Errorf("token for A asking for B: code %v, want PermissionDenied", got)
	}
	// And the trust domain still holds.
	_, err = sign(t, client, "", &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{"spiffe://example.org/ns/default/sa/a"}})})
	if got := status.Code(err); got != codes.PermissionDenied {
		t.Errorf("other trust domain: code %v, want PermissionDenied", got)
	}
}

func TestAddRemoveToken(t *testing.T) {
	c := newCA(t, ca.Config{})
	client := serve(t, c)
	key := newKey(t)
	csr := makeCSR(t, key, csrSpec{uris: []string{idA}})

	if _, err := sign(t, client, tokenA, &capb.SignRequest{Csr: csr}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("before AddToken: %v, want Unauthenticated", err)
	}
	c.AddToken(tokenA, identityA)
	if _, err := sign(t, client, tokenA, &capb.SignRequest{Csr: csr}); err != nil {
		t.Fatalf("after AddToken: %v", err)
	}
	c.RemoveToken(tokenA)
	if _, err := sign(t, client, tokenA, &capb.SignRequest{Csr: csr}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("after RemoveToken: %v, want Unauthenticated", err)
	}

	// Invalid input is refused, not stored.
	c.AddToken("", identityA)
	c.AddToken("bad-identity", ca.Identity{Namespace: "default"})
	if _, err := sign(t, client, "bad-identity", &capb.SignRequest{Csr: csr}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a token with an invalid identity was stored: %v", err)
	}
}

func TestConcurrentTokensAndSigning(t *testing.T) {
	c := newCA(t, ca.Config{Tokens: map[string]ca.Identity{tokenA: identityA}})
	client := serve(t, c)
	key := newKey(t)
	csr := makeCSR(t, key, csrSpec{uris: []string{idA}})

	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for i := range 20 {
		wg.Go(func() {
			tok := fmt.Sprintf("tok-%d", i)
			c.AddToken(tok, ca.Identity{Namespace: "ns", ServiceAccount: fmt.Sprint(i)})
			c.RemoveToken(tok)
		})
		wg.Go(func() {
			if _, err := sign(t, client, tokenA, &capb.SignRequest{Csr: csr}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("concurrent Sign: %v", err)
	}
}

// The TTL the operator configures caps what a request may ask for,
// unless MaxTTL is set above it.
func TestSignTTLIsCappedByTheConfiguredTTL(t *testing.T) {
	t0, now := fixedNow()
	seconds := func(d time.Duration) int64 { return int64(d / time.Second) }
	tests := []struct {
		name       string
		defaultTTL time.Duration
		maxTTL     time.Duration
		ask        int64 // ttl_seconds
		want       time.Duration
	}{
		{"short TTL, default asked", 5 * time.Minute, 0, 0, 5 * time.Minute},
		{"short TTL, less asked", 5 * time.Minute, 0, 60, time.Minute},
		{"short TTL, a day asked", 5 * time.Minute, 0, seconds(24 * time.Hour), 5 * time.Minute},
		{"short TTL, forever asked", 5 * time.Minute, 0, 1 << 62, 5 * time.Minute},
		{"default TTL, a day asked", 0, 0, seconds(24 * time.Hour), time.Hour},
		{"MaxTTL above the TTL, more asked", 5 * time.Minute, 2 * time.Hour, seconds(time.Hour), time.Hour},
		{"MaxTTL above the TTL, a day asked", 5 * time.Minute, 2 * time.Hour, seconds(24 * time.Hour), 2 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCA(t, ca.Config{Tokens: map[string]ca.Identity{tokenA: identityA}, DefaultTTL: tt.defaultTTL, MaxTTL: tt.maxTTL, Now: now})
			client := serve(t, c)
			key := newKey(t)
			resp, err := sign(t, client, tokenA, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idA}}), TtlSeconds: tt.ask})
			if err != nil {
				t.Fatalf("Sign: %v", err)
			}
			if got := parseSVID(t, resp, key, c.Bundle(), t0).Certificates[0].NotAfter.Sub(t0); got != tt.want {
				t.Errorf("TTL = %v, want %v", got, tt.want)
			}
		})
	}
}

// A MaxTTL below the DefaultTTL is refused, as before; the zero MaxTTL is
// never below it.
func TestNewMaxTTLBelowDefaultTTL(t *testing.T) {
	_, err := ca.New(ca.Config{DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour, Log: discardLog()})
	wantErr(t, err, "ca: DefaultTTL 2h0m0s is more than MaxTTL 1h0m0s (lower DefaultTTL or raise MaxTTL)")
	if _, err := ca.New(ca.Config{DefaultTTL: 48 * time.Hour, Log: discardLog()}); err != nil {
		t.Errorf("a DefaultTTL of 48h without MaxTTL: %v", err)
	}
}

func TestSignKeyTypes(t *testing.T) {
	t0, now := fixedNow()
	c := newCA(t, ca.Config{Tokens: map[string]ca.Identity{tokenA: identityA}, Now: now})
	client := serve(t, c)
	const accepted = "this CA signs ECDSA P-256 or P-384 keys and RSA keys of 2048 to 4096 bits (ECDSA P-256 is the usual choice)"

	ecKey := func(curve elliptic.Curve) crypto.Signer {
		k, err := ecdsa.GenerateKey(curve, rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rsaKey := func(bits int) crypto.Signer {
		k, err := rsa.GenerateKey(rand.Reader, bits)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		key     crypto.Signer // signs the CSR, which holds its public key
		csr     []byte        // or this CSR, for keys too costly to make
		wantKey string        // the key the refusal names; "" if signed
	}{
		{name: "ECDSA P-256", key: ecKey(elliptic.P256())},
		{name: "ECDSA P-384", key: ecKey(elliptic.P384())},
		{name: "RSA 2048", key: rsaKey(2048)},
		{name: "RSA 4096", key: rsaKey(4096)},
		{name: "ECDSA P-224", key: ecKey(elliptic.P224()), wantKey: "ECDSA P-224"},
		{name: "ECDSA P-521", key: ecKey(elliptic.P521()), wantKey: "ECDSA P-521"},
		{name: "Ed25519", key: edKey, wantKey: "Ed25519"},
		{name: "RSA 1024", key: rsaKey(1024), wantKey: "RSA of 1024 bits"},
		{name: "RSA 2047", csr: csrWithPublicKey(t, rsaPublicKey(2047)), wantKey: "RSA of 2047 bits"},
		{name: "RSA 4097", csr: csrWithPublicKey(t, rsaPublicKey(4097)), wantKey: "RSA of 4097 bits"},
		{name: "RSA 8192", csr: csrWithPublicKey(t, rsaPublicKey(8192)), wantKey: "RSA of 8192 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr := tt.csr
			if csr == nil {
				csr = makeCSR(t, tt.key, csrSpec{uris: []string{idA}})
			}
			resp, err := sign(t, client, tokenA, &capb.SignRequest{Csr: csr})
			if tt.wantKey == "" {
				if err != nil {
					t.Fatalf("Sign: %v", err)
				}
				parseSVID(t, resp, tt.key, c.Bundle(), t0)
				return
			}
			want := "ca: the CSR's key is " + tt.wantKey + "; " + accepted
			if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != want {
				t.Errorf("got %v: %q\nwant InvalidArgument: %q", st.Code(), st.Message(), want)
			}
		})
	}
}

// rsaPublicKey returns an RSA public key whose modulus has bits bits. It
// has no private key: it is for CSRs that must be refused before their
// signature is checked, at sizes too slow to generate in a test.
func rsaPublicKey(bits int) *rsa.PublicKey {
	n := new(big.Int).Lsh(big.NewInt(1), uint(bits-1))
	return &rsa.PublicKey{N: n.Add(n, big.NewInt(1)), E: 65537}
}

// csrWithPublicKey returns a CSR for idA that holds pub. Its signature is
// made by another key and does not verify.
func csrWithPublicKey(t *testing.T, pub crypto.PublicKey) []byte {
	t.Helper()
	var csr struct {
		TBS       asn1.RawValue
		Algorithm asn1.RawValue
		Signature asn1.BitString
	}
	if _, err := asn1.Unmarshal(makeCSR(t, newKey(t), csrSpec{uris: []string{idA}}), &csr); err != nil {
		t.Fatal(err)
	}
	var tbs struct {
		Version    int
		Subject    asn1.RawValue
		PublicKey  asn1.RawValue
		Attributes asn1.RawValue
	}
	if _, err := asn1.Unmarshal(csr.TBS.FullBytes, &tbs); err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	tbs.PublicKey = asn1.RawValue{FullBytes: spki}
	if csr.TBS.FullBytes, err = asn1.Marshal(tbs); err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(csr)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func metadataCtx(ctx context.Context, authorization string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", authorization)
}
