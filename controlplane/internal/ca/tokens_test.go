package ca_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshlet/meshlet/controlplane/internal/ca"
	"github.com/meshlet/meshlet/internal/capb"
)

func writeTokens(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tokens.yaml")
	must(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func TestTokensFile(t *testing.T) {
	file := writeTokens(t, `
tokens:
- token: `+tokenA+`
  namespace: default
  serviceAccount: a
- token: other-token
  namespace: shop
  serviceAccount: cart
`)
	c := newCA(t, ca.Config{TokensFile: file})
	client := serve(t, c)
	key := newKey(t)
	if _, err := sign(t, client, tokenA, &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{idA}})}); err != nil {
		t.Errorf("token from the file: %v", err)
	}
	if _, err := sign(t, client, "other-token", &capb.SignRequest{Csr: makeCSR(t, key, csrSpec{uris: []string{"spiffe://cluster.local/ns/shop/sa/cart"}})}); err != nil {
		t.Errorf("second token from the file: %v", err)
	}
}

func TestTokensFileErrors(t *testing.T) {
	tests := []struct {
		name string
		body string
		want []string
	}{
		{"missing serviceAccount", "tokens:\n- token: t1\n  namespace: default\n  serviceAccount: a\n- token: secret-xyz\n  namespace: default\n",
			[]string{"tokens[1]", "serviceAccount is missing"}},
		{"missing namespace", "tokens:\n- token: secret-xyz\n  serviceAccount: a\n", []string{"tokens[0]", "namespace is missing"}},
		{"missing token", "tokens:\n- namespace: default\n  serviceAccount: a\n", []string{"tokens[0] (ns/default/sa/a)", "token is missing"}},
		{"bad namespace", "tokens:\n- token: secret-xyz\n  namespace: a/b\n  serviceAccount: a\n", []string{"tokens[0]", `namespace "a/b"`}},
		{"duplicate token", "tokens:\n- token: secret-xyz\n  namespace: default\n  serviceAccount: a\n- token: secret-xyz\n  namespace: default\n  serviceAccount: b\n",
			[]string{"tokens[1] (ns/default/sa/b)", "same token as tokens[0]"}},
		{"unknown field", "tokens:\n- token: secret-xyz\n  namespace: default\n  serviceAcount: a\n", []string{"serviceAcount"}},
		{"not YAML", "tokens: [", []string{"tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := writeTokens(t, tt.body)
			_, err := ca.New(ca.Config{TokensFile: file, Log: discardLog()})
			wantErr(t, err, append([]string{file}, tt.want...)...)
			if err != nil && strings.Contains(err.Error(), "secret-xyz") {
				t.Errorf("the error quotes a token: %v", err)
			}
		})
	}

	_, err := ca.New(ca.Config{TokensFile: filepath.Join(t.TempDir(), "absent.yaml"), Log: discardLog()})
	wantErr(t, err, "absent.yaml")
}
