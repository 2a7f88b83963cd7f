package ca

import (
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"sigs.k8s.io/yaml"
)

// tokensFile is the YAML of Config.TokensFile.
type tokensFile struct {
	Tokens []tokenEntry `json:"tokens"`
}

type tokenEntry struct {
	Token          string `json:"token"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
}

// loadTokens reads a tokens file. An error names the file and the entry,
// never the token.
func loadTokens(file string, td spiffeid.TrustDomain) (map[tokenKey]Identity, error) {
	data, err := readFile(file)
	if err != nil {
		return nil, fmt.Errorf("ca: read tokens file: %w", err)
	}
	var f tokensFile
	if err := yaml.UnmarshalStrict(data, &f); err != nil {
		return nil, fmt.Errorf("ca: tokens file %s: %w (want tokens: [{token: ..., namespace: ..., serviceAccount: ...}])", file, err)
	}
	tokens := make(map[tokenKey]Identity, len(f.Tokens))
	first := make(map[tokenKey]int, len(f.Tokens))
	for i, e := range f.Tokens {
		id := Identity{Namespace: e.Namespace, ServiceAccount: e.ServiceAccount}
		where := fmt.Sprintf("ca: tokens file %s: tokens[%d]", file, i)
		if _, err := id.spiffeID(td); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		where += " (" + id.String() + ")"
		switch {
		case e.Token == "":
			return nil, fmt.Errorf("%s: token is missing", where)
		case strings.TrimSpace(e.Token) != e.Token || strings.ContainsAny(e.Token, " \t\r\n"):
			return nil, fmt.Errorf("%s: the token holds white space, which a \"Bearer <token>\" header cannot carry", where)
		}
		k := keyOf(e.Token)
		if j, dup := first[k]; dup {
			return nil, fmt.Errorf("%s: the same token as tokens[%d]: give each identity its own token", where, j)
		}
		first[k] = i
		tokens[k] = id
	}
	return tokens, nil
}
