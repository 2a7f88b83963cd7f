package config_test

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// A YAML stream is cut at its "---" lines; what follows the dashes on the
// marker's line belongs to the next document.
func TestSplitDocuments(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		want     []string
	}{
		{"empty", "", []string{""}},
		{"one document", "a: 1\n", []string{"a: 1\n"}},
		{"no final newline", "a: 1", []string{"a: 1"}},
		{"two documents", "a: 1\n---\nb: 2\n", []string{"a: 1\n", "\nb: 2\n"}},
		{"leading marker", "---\na: 1\n", []string{"", "\na: 1\n"}},
		{"comment after the marker", "a: 1\n--- # c\nb: 2", []string{"a: 1\n", " # c\nb: 2"}},
		{"tab after the marker", "a\n---\t x\nb\n", []string{"a\n", "\t x\nb\n"}},
		{"CRLF and trailing marker", "a\r\n---  \r\nb\r\n---", []string{"a\r\n", "  \r\nb\r\n", ""}},
		{"four dashes are content", "a\n----\nb\n", []string{"a\n----\nb\n"}},
		{"indented dashes are content", "a\n ---\nb\n", []string{"a\n ---\nb\n"}},
		{"dashes in a value", "a: '---'\n---x\n", []string{"a: '---'\n---x\n"}},
		{"empty documents", "---\n---\n", []string{"", "\n", "\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			docs := config.SplitDocuments([]byte(tc.in))
			got := make([]string, len(docs))
			for i, d := range docs {
				got[i] = string(d)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("SplitDocuments(%q) (-want +got):\n%s", tc.in, diff)
			}
			// A document is a slice of the input: appending to one
			// must not write over the next.
			if len(docs) > 1 {
				_ = append(docs[0], 'X')
				if string(docs[1]) != tc.want[1] {
					t.Errorf("appending to document 1 changed document 2 to %q", docs[1])
				}
			}
		})
	}
}
