package mesh

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/meshlet/meshlet/resolver"
)

// errEscapedSlash is the refusal of a path with an escaped slash under
// RejectEscapedSlashes.
var errEscapedSlash = errors.New("the path holds an escaped slash or backslash (%2F or %5C), which this server refuses")

// normalizePath rewrites a request path as sent (escaped, without the
// query) as a server Listener says, in Envoy's order: escaped slashes
// first, then RFC 3986 normalization, then merging slashes. It returns
// the new path, still escaped, and whether escaped slashes were
// unescaped under RedirectEscapedSlashes, in which case the client is to
// be sent there. A path with %00 or a bad escape is refused whatever the
// Listener says, as Envoy refuses it.
func normalizePath(p string, l *resolver.Listener) (string, bool, error) {
	if p == "*" {
		return p, false, nil // OPTIONS * names no resource
	}
	if p == "" {
		p = "/" // absolute-form without a path (RFC 9112, 3.2.2)
	}
	if p[0] != '/' {
		return "", false, fmt.Errorf("the path %q does not start with /", p)
	}
	if err := checkEscapes(p); err != nil {
		return "", false, err
	}
	redirect := false
	if l.EscapedSlashes != resolver.KeepEscapedSlashes {
		if unescaped, found := unescapeSlashes(p); found {
			switch l.EscapedSlashes {
			case resolver.RejectEscapedSlashes:
				return "", false, errEscapedSlash
			case resolver.RedirectEscapedSlashes:
				redirect = true
			}
			p = unescaped
		}
	}
	if l.NormalizePath {
		p = removeDotSegments(canonicalEscapes(p))
	}
	if l.MergeSlashes {
		p = mergeSlashes(p)
	}
	return p, redirect, nil
}

// checkEscapes refuses a bad percent-escape and %00: a NUL cut short by
// one reader and not by another is a way around a policy.
func checkEscapes(p string) error {
	for i := 0; i < len(p); i++ {
		if p[i] != '%' {
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return fmt.Errorf("the path has a bad escape at byte %d", i)
		}
		if p[i+1] == '0' && p[i+2] == '0' {
			return errors.New("the path holds %00")
		}
		i += 2
	}
	return nil
}

// unescapeSlashes turns %2F into / and %5C into \ (either case), and
// reports whether there were any.
func unescapeSlashes(p string) (string, bool) {
	var b strings.Builder
	found := false
	for i := 0; i < len(p); i++ {
		if p[i] == '%' && i+2 < len(p) {
			switch strings.ToUpper(p[i+1 : i+3]) {
			case "2F":
				b.WriteByte('/')
				i += 2
				found = true
				continue
			case "5C":
				b.WriteByte('\\')
				i += 2
				found = true
				continue
			}
		}
		b.WriteByte(p[i])
	}
	if !found {
		return p, false
	}
	return b.String(), true
}

// canonicalEscapes decodes percent-encoded unreserved characters, writes
// the remaining escapes in upper case (RFC 3986, 6.2.2), turns \ into /
// (as Envoy's normalize_path does) and escapes any byte that may not
// stand in a path, so that the result is in one form only.
func canonicalEscapes(p string) string {
	if plainPath(p) {
		return p // the common case: already in the one form
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%' && i+2 < len(p):
			d := unhex(p[i+1])<<4 | unhex(p[i+2])
			if isUnreserved(d) {
				b.WriteByte(d)
			} else {
				fmt.Fprintf(&b, "%%%02X", d)
			}
			i += 2
		case c == '\\':
			b.WriteByte('/')
		case c == '/' || isPathChar(c):
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}

// removeDotSegments removes "." and ".." segments from an absolute path
// (RFC 3986, 5.2.4). A path that ends in one keeps its trailing slash;
// ".." never climbs above the root.
func removeDotSegments(p string) string {
	if !strings.Contains(p, "/.") {
		return p // no dot segment to remove
	}
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "")
		}
	}
	return "/" + strings.Join(out, "/")
}

// mergeSlashes replaces each run of slashes with one.
func mergeSlashes(p string) string {
	if !strings.Contains(p, "//") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] == '/' && i > 0 && p[i-1] == '/' {
			continue
		}
		b.WriteByte(p[i])
	}
	return b.String()
}

// setPath gives r the escaped path p, so that the handler sees the path
// that authorization saw: URL.Path, URL.RawPath and RequestURI all say p.
func setPath(r *http.Request, p string) error {
	if p == "*" {
		return nil
	}
	decoded, err := url.PathUnescape(p)
	if err != nil {
		return fmt.Errorf("the path %q: %w", p, err)
	}
	r.URL.Path, r.URL.RawPath = decoded, p
	if (&url.URL{Path: decoded}).EscapedPath() == p {
		r.URL.RawPath = "" // net/http leaves it empty when it adds nothing
	}
	r.RequestURI = p
	if r.URL.RawQuery != "" || r.URL.ForceQuery {
		r.RequestURI += "?" + r.URL.RawQuery
	}
	return nil
}

// validMethod reports whether m is an RFC 9110 token without lower-case
// letters. Methods are case-sensitive, and a handler that compares them
// without case would serve "delete" as DELETE past a policy on DELETE.
func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		switch {
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// isUnreserved reports whether c is an RFC 3986 unreserved character.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPathChar reports whether c may stand unescaped in a path segment
// (RFC 3986 pchar, less pct-encoded).
func isPathChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte("!$&'()*+,;=:@", c) >= 0
}

// plainPath reports whether p has only characters that stand for
// themselves in a path: no escape, no \, nothing to escape.
func plainPath(p string) bool {
	for i := 0; i < len(p); i++ {
		if c := p[i]; c != '/' && !isPathChar(c) {
			return false
		}
	}
	return true
}
