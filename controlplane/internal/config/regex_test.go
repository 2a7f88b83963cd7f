package config_test

import (
	"encoding/json"
	"fmt"
	"regexp/syntax"
	"strings"
	"testing"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// regexRoute is a VirtualService that matches regex on the field given,
// one of uri, method or headers.
func regexRoute(field, re string) map[string][]byte {
	q, err := json.Marshal(re) // a JSON string is a YAML string
	if err != nil {
		panic(err)
	}
	match := fmt.Sprintf("%s: {regex: %s}", field, q)
	if field == "headers" {
		match = fmt.Sprintf("headers: {end-user: {regex: %s}}", q)
	}
	return map[string][]byte{"reviews.yaml": []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - match:
    - ` + match + `
    route:
    - destination: {host: reviews}
`)}
}

// compiledSize is the size of re's program as regexp.Compile makes it.
func compiledSize(t *testing.T, re string) int {
	t.Helper()
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := syntax.Compile(parsed.Simplify())
	if err != nil {
		t.Fatal(err)
	}
	return len(prog.Inst)
}

func TestParseRegexLimits(t *testing.T) {
	const vsName = "VirtualService default/reviews"
	uri := "spec.http[0].match[0].uri.regex"
	header := `spec.http[0].match[0].headers["end-user"].regex`
	method := "spec.http[0].match[0].method.regex"
	tooLong := func(n int) string {
		return fmt.Sprintf("%d bytes is over the 1024-byte limit for a regular expression (shorten it; an exact or prefix match needs no regex)", n)
	}
	tooBig := func(re string, limit int) string {
		return fmt.Sprintf("compiles to %d instructions, over the limit of %d (a counted repetition x{n} copies x n times: lower the counts, or match with exact or prefix)", compiledSize(t, re), limit)
	}

	tests := []struct {
		name   string
		field  string // uri, method or headers
		re     string
		opts   []config.Option
		path   string
		reason func() string // the whole reason; nil if the regex is accepted
	}{
		// Regexes people write for Istio pass.
		{name: "versioned API prefix", field: "uri", re: `^/api/v[0-9]+/.*`},
		{name: "substring", field: "headers", re: `.*jason.*`},
		{name: "cookie, from Istio's docs", field: "headers", re: `^(.*?;)?(user=jason)(;.*)?$`},
		{name: "methods", field: "method", re: `GET|HEAD|OPTIONS`},
		{name: "case-insensitive", field: "uri", re: `(?i)^/reviews/[0-9]+$`},
		{name: "UUID", field: "uri", re: `^/api/v1/users/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`},
		{name: "two bounded segments", field: "uri", re: `/static/[a-zA-Z0-9._-]{0,200}/[a-zA-Z0-9._-]{0,200}`},
		{name: "at the length limit", field: "uri", re: "/" + strings.Repeat("[a-z]", 204) + "..."},
		{name: "at the size limit", field: "uri", re: `[0-9a-f]{998}`},

		// Blowups are refused with the size and the limit.
		{name: "3 MB", field: "uri", re: strings.Repeat("a", 3<<20), path: uri,
			reason: func() string { return tooLong(3 << 20) }},
		{name: "one byte over the length limit", field: "headers", re: strings.Repeat("a", 1025), path: header,
			reason: func() string { return tooLong(1025) }},
		{name: "just over the size limit", field: "uri", re: `[0-9a-f]{999}`, path: uri,
			reason: func() string { return tooBig(`[0-9a-f]{999}`, 1000) }},
		{name: "bounded repetition", field: "method", re: `.{0,1000}`, path: method,
			reason: func() string { return tooBig(`.{0,1000}`, 1000) }},
		{name: "repetitions that add up", field: "uri", re: strings.Repeat(`.{0,1000}`, 100), path: uri,
			reason: func() string { return tooBig(strings.Repeat(`.{0,1000}`, 100), 1000) }},
		{name: "nested repetition", field: "uri", re: `(a{1000}){1000}`, path: uri,
			reason: func() string {
				return "invalid regular expression (RE2 syntax): error parsing regexp: invalid repeat count: `{1000}`"
			}},
		{name: "not RE2", field: "headers", re: `a(?=b)`, path: header,
			reason: func() string {
				return "invalid regular expression (RE2 syntax): error parsing regexp: invalid or unsupported Perl syntax: `(?=`"
			}},

		// The limits can be set.
		{name: "lower size limit", field: "headers", re: `.*jason.*`, opts: []config.Option{config.WithMaxRegexProgramSize(10)}, path: header,
			reason: func() string { return tooBig(`.*jason.*`, 10) }},
		{name: "lower length limit", field: "uri", re: `.*jason.*`, opts: []config.Option{config.WithMaxRegexLength(8)}, path: uri,
			reason: func() string {
				return "9 bytes is over the 8-byte limit for a regular expression (shorten it; an exact or prefix match needs no regex)"
			}},
		{name: "higher limits", field: "uri", re: strings.Repeat(`.{0,1000}`, 200),
			opts: []config.Option{config.WithMaxRegexLength(2000), config.WithMaxRegexProgramSize(1 << 20)}},
		{name: "zero is the default", field: "uri", re: `[0-9a-f]{999}`, opts: []config.Option{config.WithMaxRegexProgramSize(0)}, path: uri,
			reason: func() string { return tooBig(`[0-9a-f]{999}`, 1000) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := config.Parse(regexRoute(tt.field, tt.re), tt.opts...)
			if tt.reason == nil {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				if len(cfg.VirtualServices) != 1 {
					t.Fatalf("got %d VirtualServices, want 1", len(cfg.VirtualServices))
				}
				return
			}
			errs := fieldErrors(t, err)
			wantErr := &config.FieldError{File: "reviews.yaml", Resource: vsName, Path: tt.path, Reason: tt.reason()}
			if len(errs) != 1 || *errs[0] != *wantErr {
				t.Errorf("got errors:\n%s\nwant:\n  %s", errorList(errs), wantErr)
			}
		})
	}
}

// The size in the error is the size regexp.Compile gives the program, for
// every kind of node the counting follows.
func TestParseRegexSizeIsCompiledSize(t *testing.T) {
	for _, re := range []string{
		`a`, `abc`, `(?i)abc`, `[a-c]`, `.`, `(?s).`, `^$`, `\b\B`, `\A\z`, `(?m)^a$`,
		`()`, `(a)`, `(?:)`, `a*`, `a+`, `a?`, `a*?`, `(a*)*`, `(a?)+`, `(?:a|)*`,
		`a|b|c`, `ab|cd|ef`, `(a|)`, `a{2}`, `a{2,5}`, `a{2,}`, `a{0,3}`, `a{0}`, `(ab){3,}`,
		`[^\x00-\x{10FFFF}]`, `a[^\x00-\x{10FFFF}]`, `a|[^\x00-\x{10FFFF}]`, `[^\x00-\x{10FFFF}]*`,
		`([^\x00-\x{10FFFF}])+`, `(?:[^\x00-\x{10FFFF}]|a)?b`, `x{0}|[^\x00-\x{10FFFF}]`,
	} {
		t.Run(re, func(t *testing.T) {
			_, err := config.Parse(regexRoute("uri", re), config.WithMaxRegexProgramSize(1))
			want := fmt.Sprintf("compiles to %d instructions, over the limit of 1", compiledSize(t, re))
			if errs := fieldErrors(t, err); len(errs) != 1 || !strings.HasPrefix(errs[0].Reason, want) {
				t.Errorf("got errors:\n%s\nwant one that starts %q", errorList(errs), want)
			}
		})
	}
}
