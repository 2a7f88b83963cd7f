package config_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// meshDoc is one document of TestLoaderRandomMeshEdits, as fields that
// its edits change.
type meshDoc struct {
	kind      string // ServiceEntry, DestinationRule or WorkloadEntry
	name, ns  string
	app       string   // WorkloadEntry label, or ServiceEntry selector ("" for none, "*" for an empty one)
	ports     []string // port names: the ServiceEntry's, or the WorkloadEntry's
	address   string
	extraMeta bool // a metadata field meshlet refuses
}

func (d meshDoc) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: networking.istio.io/v1\nkind: %s\nmetadata:\n  name: %s\n  namespace: %s\n", d.kind, d.name, d.ns)
	if d.extraMeta {
		b.WriteString("  owner: someone\n")
	}
	b.WriteString("spec:\n")
	switch d.kind {
	case "ServiceEntry":
		fmt.Fprintf(&b, "  hosts:\n  - %s\n  resolution: STATIC\n  ports:\n", d.name)
		for i, p := range d.ports {
			fmt.Fprintf(&b, "  - number: %d\n    name: %s\n    protocol: GRPC\n", 9080+i, p)
		}
		switch d.app {
		case "":
		case "*":
			b.WriteString("  workloadSelector: {}\n")
		default:
			fmt.Fprintf(&b, "  workloadSelector:\n    labels:\n      app: %s\n", d.app)
		}
	case "DestinationRule":
		fmt.Fprintf(&b, "  host: %s\n  subsets:\n  - name: v1\n    labels:\n      version: v1\n", d.app)
	case "WorkloadEntry":
		fmt.Fprintf(&b, "  address: %s\n  labels:\n    app: %s\n", d.address, d.app)
		if len(d.ports) > 0 {
			b.WriteString("  ports:\n")
			for i, p := range d.ports {
				fmt.Fprintf(&b, "    %s: %d\n", p, 9080+i)
			}
		}
	}
	return b.String()
}

// Random edits over several files of ServiceEntries, DestinationRules and
// WorkloadEntries (selectors, labels, ports and namespaces changed,
// documents added, removed, moved to another file and defined twice,
// files removed and written again) give from one Loader, at every load,
// what a fresh Load gives: the same config, and the same errors in the
// same order with the same text.
func TestLoaderRandomMeshEdits(t *testing.T) {
	const files, rounds = 4, 150
	apps := []string{"a", "b", "c", "d"} // d is selected by nothing at first
	portNames := []string{"grpc", "http", "metrics"}
	namespaces := []string{"default", "default", "other"}
	rng := rand.New(rand.NewPCG(12, 0))
	pick := func(s []string) string { return s[rng.IntN(len(s))] }
	somePorts := func() []string {
		var out []string
		for _, p := range portNames {
			if rng.IntN(3) == 0 {
				out = append(out, p)
			}
		}
		return out
	}
	next := 0
	newDoc := func() meshDoc {
		next++
		switch rng.IntN(8) {
		case 0:
			sel := pick(apps[:3])
			switch rng.IntN(6) {
			case 0:
				sel = ""
			case 1:
				sel = "*"
			}
			return meshDoc{kind: "ServiceEntry", name: fmt.Sprintf("svc-%d", next), ns: pick(namespaces), app: sel, ports: []string{"grpc", pick(portNames[1:])}}
		case 1:
			return meshDoc{kind: "DestinationRule", name: fmt.Sprintf("dr-%d", next), ns: pick(namespaces), app: fmt.Sprintf("dr-%d", next)}
		}
		return meshDoc{kind: "WorkloadEntry", name: fmt.Sprintf("we-%d", next), ns: pick(namespaces), app: pick(apps), ports: somePorts(),
			address: fmt.Sprintf("10.0.%d.%d", next/250, next%250+1)}
	}

	dir := t.TempDir()
	content := make([][]meshDoc, files)
	present := make([]bool, files)
	for i := range content {
		content[i] = []meshDoc{{kind: "ServiceEntry", name: fmt.Sprintf("base-%d", i), ns: "default", app: apps[i%3], ports: []string{"grpc", "http"}}}
		for range 8 {
			content[i] = append(content[i], newDoc())
		}
		present[i] = true
	}
	writeFile := func(i int) {
		name := filepath.Join(dir, fmt.Sprintf("mesh-%d.yaml", i))
		if !present[i] {
			if err := os.Remove(name); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return
		}
		docs := make([]string, len(content[i]))
		for j, d := range content[i] {
			docs[j] = d.String()
		}
		write(t, dir, filepath.Base(name), strings.Join(docs, "---\n"))
	}
	for i := range files {
		writeFile(i)
	}
	// catchAll selects every WorkloadEntry, each port name valid: with it
	// only the repaired errors below are left.
	catchAll := func(on bool) {
		if !on {
			if err := os.Remove(filepath.Join(dir, "catchall.yaml")); err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			return
		}
		var docs []string
		for _, ns := range namespaces[1:] {
			docs = append(docs, meshDoc{kind: "ServiceEntry", name: "all", ns: ns, app: "*", ports: portNames}.String())
		}
		write(t, dir, "catchall.yaml", strings.Join(docs, "---\n"))
	}
	// repair undoes the edits that make a document invalid on its own
	// and the second definitions of a name.
	repair := func() {
		seen := map[string]bool{}
		for i := range content {
			docs := content[i][:0]
			for _, d := range content[i] {
				key := d.kind + "/" + d.ns + "/" + d.name
				if seen[key] {
					continue
				}
				seen[key] = true
				if d.address == "not-an-ip" {
					d.address = "10.2.0.1"
				}
				if d.kind == "DestinationRule" {
					d.app = d.name
				}
				d.extraMeta = false
				docs = append(docs, d)
			}
			content[i] = docs
		}
	}

	l := config.NewLoader()
	sameLoad(t, l, dir)
	var good, bad int
	for round := range rounds {
		touched := map[int]bool{}
		if rng.IntN(4) == 0 {
			repair()
			for i := range files {
				touched[i] = true
			}
		}
		if rng.IntN(5) == 0 {
			catchAll(rng.IntN(2) == 0)
		}
		for range 1 + rng.IntN(4) {
			i := rng.IntN(files)
			touched[i] = true
			docs := content[i]
			if len(docs) == 0 {
				docs = append(docs, newDoc())
			}
			j := rng.IntN(len(docs))
			d := &docs[j]
			switch rng.IntN(12) {
			case 0:
				d.address = fmt.Sprintf("10.1.%d.%d", rng.IntN(250), rng.IntN(250)+1)
			case 1:
				d.address = "not-an-ip"
			case 2:
				if d.kind == "ServiceEntry" {
					d.app = pick(append([]string{"", "*"}, apps...))
				} else {
					d.app = pick(apps)
				}
			case 3:
				d.ports = somePorts()
				if d.kind == "ServiceEntry" && len(d.ports) == 0 {
					d.ports = []string{"grpc"}
				}
			case 4:
				d.ns = pick(namespaces)
			case 5:
				d.extraMeta = !d.extraMeta && rng.IntN(3) == 0
			case 6:
				docs = slices.Delete(docs, j, j+1)
			case 7, 8:
				docs = slices.Insert(docs, j, newDoc())
			case 9: // defined twice, maybe in another file
				o := rng.IntN(files)
				content[o] = append(content[o], docs[j])
				touched[o] = true
			case 10: // moved to another file
				o := rng.IntN(files)
				if o != i {
					content[o] = slices.Insert(content[o], rng.IntN(len(content[o])+1), docs[j])
					docs = slices.Delete(docs, j, j+1)
					touched[o] = true
				}
			case 11:
				present[i] = !present[i]
			}
			content[i] = docs
		}
		for i := range touched {
			writeFile(i)
		}
		sameLoad(t, l, dir)
		if _, err := l.Load(dir); err != nil {
			bad++
		} else {
			good++
		}
		if t.Failed() {
			t.Fatalf("round %d", round)
		}
	}
	t.Logf("%d good, %d bad", good, bad)
	// The edits should reach both outcomes often, or the test proves little.
	if good < rounds/10 || bad < rounds/10 {
		t.Errorf("%d loads good and %d refused of %d: want at least %d of each", good, bad, rounds, rounds/10)
	}
}
