package config_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// yamlEdgeCases are documents whose values JSON writes in its own way, or
// that YAML refuses.
var yamlEdgeCases = []string{
	"",
	"# only a comment\n",
	"~\n",
	"null\n",
	"a: 1\n",
	"a: -9223372036854775808\nb: 9223372036854775807\nc: 18446744073709551615\n",
	"a: 18446744073709551616\n", // a float to YAML
	"a: 1.5\nb: 1e3\nc: .inf\nd: -.inf\ne: .nan\n",
	"a: 0x1F\nb: 0o17\nc: 017\nd: +12\ne: 1_000\n",
	"a: yes\nb: no\nc: on\nd: off\ne: true\nf: False\ng: y\n",
	"a: 2001-12-14t21:59:43.10-05:00\nb: 2002-12-14\n",
	"1: a\n",
	"true: a\n",
	"1.5: a\n",
	"~: a\n",
	"[a, b]: c\n",
	"a: !!binary gIGC\n",
	"a: !!binary aGVsbG8=\n",
	"a: \"\\xff\"\n",
	"a: '<&>'\nb: \"\\u2028\"\nc: \"\\t\\n\"\n",
	"a: []\nb: {}\nc: [[], {}, [1, [2, {d: e}]]]\n",
	"a: &x {b: 1, c: [1, 2]}\nd: *x\ne: *x\n",
	"a: &x [1]\nb: {<<: {c: 1}, d: 2}\n",
	"a: 1\na: 2\n",
	"a: b: c\n",
	"\ta: 1\n",
	"a: [1, 2\n",
	"- a\n- b\n",
	"just a string\n",
	"42\n",
	"a: !!str 1\nb: !!int \"2\"\nc: !!float 3\n",
	"a: |\n  line\n  another\nb: >\n  folded\n  text\n",
	"a: \"\"\nb: ''\nc:\n",
	"apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: x\nspec:\n  weight: 1.0\n",
	"a: " + strings.Repeat("[", 1100) + strings.Repeat("]", 1100) + "\n",
}

// decodeYAML gives what the JSON round trip gives, value or error text,
// for every document of the testdata, and for
// documents that JSON writes in its own way; and it takes the direct path
// for a plain resource.
func TestDecodeYAMLIsTheRoundTrip(t *testing.T) {
	docs := map[string]string{}
	for i, c := range yamlEdgeCases {
		docs[fmt.Sprintf("edge case %d", i)] = c
	}
	{
		err := filepath.WalkDir("testdata", func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for i, doc := range config.SplitDocuments(b) {
				docs[fmt.Sprintf("%s, document %d", path, i+1)] = string(doc)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(docs) < 100 {
		t.Fatalf("%d documents, want at least 100 to compare", len(docs))
	}
	direct := 0
	for name, doc := range docs {
		want, wantErr := config.RoundTripJSON([]byte(doc))
		got, gotErr := config.DecodeYAML([]byte(doc))
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
			t.Errorf("%s: error %v, the round trip's %v", name, gotErr, wantErr)
		}
		// reflect.DeepEqual first: cmp.Diff takes minutes over the
		// deeply nested case.
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: value differs from the round trip's (-round trip +decodeYAML):\n%s", name, cmp.Diff(want, got))
		}
		if config.DecodesDirectly([]byte(doc)) {
			direct++
		}
	}
	if !config.DecodesDirectly([]byte(workloadEntry("we", "10.0.0.1"))) {
		t.Error("a WorkloadEntry is not decoded directly")
	}
	for _, c := range []string{"a: 1.5\n", "1: a\n", "a: !!binary gIGC\n", "a: [1, 2\n"} {
		if config.DecodesDirectly([]byte(c)) {
			t.Errorf("%q is decoded directly, want the round trip", c)
		}
	}
	t.Logf("%d of %d documents decoded directly", direct, len(docs))
}
