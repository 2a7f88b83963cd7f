package config_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

const fleetService = `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: fleet
spec:
  hosts:
  - fleet
  location: MESH_INTERNAL
  ports:
  - number: 8080
    name: http
    protocol: HTTP
  resolution: STATIC
  workloadSelector:
    labels:
      app: fleet
`

// workloadEntry is a WorkloadEntry of the fleet service.
func workloadEntry(name, address string) string {
	return fmt.Sprintf(`apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: %s
spec:
  address: %s
  ports:
    http: 8080
  labels:
    app: fleet
`, name, address)
}

// fleetFile is file i of a fleet of n WorkloadEntries per file, its
// addresses in the third octet gen.
func fleetFile(i, n, gen int) string {
	docs := make([]string, n)
	for j := range n {
		docs[j] = workloadEntry(fmt.Sprintf("we-%d-%d", i, j), fmt.Sprintf("10.%d.%d.%d", i, gen%250, j+1))
	}
	return strings.Join(docs, "---\n")
}

// writeFleet writes the fleet service and files files of n
// WorkloadEntries each into a new directory.
func writeFleet(t testing.TB, files, n int) string {
	dir := t.TempDir()
	write(t, dir, "service.yaml", fleetService)
	for i := range files {
		write(t, dir, fmt.Sprintf("we-%02d.yaml", i), fleetFile(i, n, 0))
	}
	return dir
}

func write(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// sameLoad fails the test unless a Loader's load of dir gives what Load
// gives: the same config, or the same error text.
func sameLoad(t *testing.T, l *config.Loader, dir string) {
	t.Helper()
	want, wantErr := config.Load(dir)
	got, gotErr := l.Load(dir)
	if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
		t.Fatalf("Loader.Load error:\n%v\nLoad error:\n%v", gotErr, wantErr)
	}
	if diff := cmp.Diff(want, got, protocmp.Transform()); diff != "" {
		t.Fatalf("Loader.Load config differs from Load's (-Load +Loader):\n%s", diff)
	}
}

// A Loader gives what Load gives for every directory of testdata, good and
// bad, the second time from its memory.
func TestLoaderLoadsAsLoadDoes(t *testing.T) {
	dirs, err := filepath.Glob("testdata/bad/*")
	if err != nil {
		t.Fatal(err)
	}
	dirs = append(dirs, "testdata/good", "testdata/fault", "testdata/kubernetes")
	for _, dir := range dirs {
		t.Run(dir, func(t *testing.T) {
			l := config.NewLoader()
			sameLoad(t, l, dir)
			sameLoad(t, l, dir)
			files, err := filepath.Glob(filepath.Join(dir, "*.y*ml"))
			if err != nil {
				t.Fatal(err)
			}
			if l.Reused() < len(files) {
				t.Errorf("second load reused %d files, want at least the %d at the top of %s", l.Reused(), len(files), dir)
			}
		})
	}
}

// After one file of many changes, a Loader parses only that file, and
// serves the change.
func TestLoaderParsesOnlyChangedFiles(t *testing.T) {
	dir := writeFleet(t, 5, 3)
	l := config.NewLoader()
	sameLoad(t, l, dir)
	if got := l.Reused(); got != 0 {
		t.Errorf("first load reused %d files, want 0", got)
	}
	write(t, dir, "we-02.yaml", fleetFile(2, 3, 7))
	sameLoad(t, l, dir)
	if got, want := l.Reused(), 5; got != want { // the service and four of five
		t.Errorf("load after one edit reused %d files, want %d", got, want)
	}
	cfg, err := l.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, we := range cfg.WorkloadEntries {
		if we.Meta.Name == "we-2-0" {
			found = we.Spec.Address == "10.2.7.1"
		}
	}
	if !found {
		t.Error("the edited address of we-2-0 is not in the config")
	}

	// A new file is parsed, a removed one forgotten.
	write(t, dir, "we-09.yaml", fleetFile(9, 3, 0))
	sameLoad(t, l, dir)
	if err := os.Remove(filepath.Join(dir, "we-09.yaml")); err != nil {
		t.Fatal(err)
	}
	sameLoad(t, l, dir)
}

// A resource defined in two files is refused in the later one, whichever
// of the two changed, and served again once the other is gone: the
// definition each file holds comes from memory then, and must be whole.
func TestLoaderChecksDuplicatesAcrossFiles(t *testing.T) {
	dir := writeFleet(t, 2, 2)
	l := config.NewLoader()
	sameLoad(t, l, dir)

	// we-01.yaml, unchanged, now holds a name that the new a.yaml holds,
	// before it in name order.
	write(t, dir, "a.yaml", workloadEntry("we-1-0", "10.9.9.9"))
	sameLoad(t, l, dir)
	_, err := l.Load(dir)
	checkErrors(t, fieldErrors(t, err), want{"we-01.yaml", "WorkloadEntry default/we-1-0", "metadata.name", "is also defined in a.yaml"})

	// a.yaml gone, we-01.yaml's own definition, parsed two loads ago, is
	// served.
	if err := os.Remove(filepath.Join(dir, "a.yaml")); err != nil {
		t.Fatal(err)
	}
	sameLoad(t, l, dir)
	cfg, err := l.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(cfg.WorkloadEntries); got != 4 {
		t.Errorf("%d WorkloadEntries, want 4", got)
	}

	// A duplicate's spec is not looked at, as Load never did: its own
	// errors, found when its file was parsed, are not reported.
	write(t, dir, "we-01.yaml", strings.Replace(fleetFile(1, 2, 0), "address:", "adress:", 1))
	_, err = l.Load(dir)
	checkErrors(t, fieldErrors(t, err), want{"we-01.yaml", "WorkloadEntry default/we-1-0", "spec.adress", "unknown field"})
	write(t, dir, "a.yaml", workloadEntry("we-1-0", "10.9.9.9"))
	_, err = l.Load(dir)
	errs := fieldErrors(t, err)
	checkErrors(t, errs, want{"we-01.yaml", "WorkloadEntry default/we-1-0", "metadata.name", "is also defined in a.yaml"})
	if len(errs) != 1 {
		t.Errorf("%d errors, want only the duplicate's: %v", len(errs), err)
	}

	// A duplicate within one file, after one across files.
	write(t, dir, "a.yaml", workloadEntry("we-1-0", "10.9.9.9"))
	write(t, dir, "we-01.yaml", fleetFile(1, 2, 0)+"---\n"+workloadEntry("we-1-0", "10.9.9.8"))
	sameLoad(t, l, dir)
	write(t, dir, "a.yaml", workloadEntry("other", "10.9.9.9"))
	sameLoad(t, l, dir)
}

// A file whose edit is refused keeps its error at each load until it is
// fixed, and the rest keep coming from memory.
func TestLoaderRefusesABadEditEveryTime(t *testing.T) {
	dir := writeFleet(t, 3, 2)
	l := config.NewLoader()
	sameLoad(t, l, dir)
	write(t, dir, "we-01.yaml", strings.Replace(fleetFile(1, 2, 0), "address:", "adress:", 1))
	for range 2 {
		sameLoad(t, l, dir)
		_, err := l.Load(dir)
		checkErrors(t, fieldErrors(t, err), want{"we-01.yaml", "WorkloadEntry default/we-1-0", "spec.adress", "unknown field"})
	}
	write(t, dir, "we-01.yaml", fleetFile(1, 2, 0))
	sameLoad(t, l, dir)
}

// BenchmarkReloadOneFileChanged reloads a directory of 1,000
// WorkloadEntries in 20 files after one file changed: Load parses all 20,
// a Loader one.
//
//	go test ./controlplane/internal/config -run '^$' -bench ReloadOneFileChanged -count 5
func BenchmarkReloadOneFileChanged(b *testing.B) {
	for _, bb := range []struct {
		name string
		load func() func(string) error
	}{
		{"Load", func() func(string) error {
			return func(dir string) error { _, err := config.Load(dir); return err }
		}},
		{"Loader", func() func(string) error {
			l := config.NewLoader()
			return func(dir string) error { _, err := l.Load(dir); return err }
		}},
	} {
		b.Run(bb.name, func(b *testing.B) {
			dir := writeFleet(b, 20, 50)
			load := bb.load()
			if err := load(dir); err != nil {
				b.Fatal(err)
			}
			gen := 0
			for b.Loop() {
				b.StopTimer()
				gen++
				write(b, dir, "we-07.yaml", fleetFile(7, 50, gen))
				b.StartTimer()
				if err := load(dir); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// After a few documents of a file change, a Loader parses only those,
// and takes the file's other documents from memory.
func TestLoaderParsesOnlyChangedDocuments(t *testing.T) {
	dir := writeFleet(t, 3, 10)
	l := config.NewLoader()
	sameLoad(t, l, dir)
	if got, want := l.Parsed(), 31; got != want {
		t.Errorf("first load parsed %d documents, want %d", got, want)
	}
	docs := strings.Split(fleetFile(1, 10, 0), "---\n")
	docs[3] = workloadEntry("we-1-3", "10.1.9.4")
	docs[7] = workloadEntry("we-1-7", "10.1.9.8")
	write(t, dir, "we-01.yaml", strings.Join(docs, "---\n"))
	sameLoad(t, l, dir)
	if got, want := l.Parsed(), 2; got != want {
		t.Errorf("load after two documents changed parsed %d documents, want %d", got, want)
	}
	if got, want := l.Reused(), 3; got != want {
		t.Errorf("load after one file changed reused %d files, want %d", got, want)
	}

	// A document's index is part of what its errors say: one inserted at
	// the top moves every document after it, which are parsed again.
	docs = append([]string{workloadEntry("we-1-new", "10.1.9.1")}, docs...)
	write(t, dir, "we-01.yaml", strings.Join(docs, "---\n"))
	sameLoad(t, l, dir)
	if got, want := l.Parsed(), 11; got != want {
		t.Errorf("load after a document was inserted first parsed %d documents, want %d", got, want)
	}
	// One appended at the end leaves the others where they were.
	docs = append(docs, workloadEntry("we-1-last", "10.1.9.2"))
	write(t, dir, "we-01.yaml", strings.Join(docs, "---\n"))
	sameLoad(t, l, dir)
	if got, want := l.Parsed(), 1; got != want {
		t.Errorf("load after a document was appended parsed %d documents, want %d", got, want)
	}
}

// Random edits of documents (new addresses, bad fields, names defined
// twice, documents added and removed, a file's only document) give from a
// Loader what Load gives, error text included.
func TestLoaderRandomDocumentEdits(t *testing.T) {
	const files, perFile, rounds = 4, 6, 60
	dir := writeFleet(t, files, perFile)
	rng := rand.New(rand.NewPCG(7, 0))
	content := make([][]string, files)
	for i := range files {
		content[i] = strings.Split(fleetFile(i, perFile, 0), "---\n")
	}
	l := config.NewLoader()
	sameLoad(t, l, dir)
	for round := range rounds {
		i := rng.IntN(files)
		docs := content[i]
		for range 1 + rng.IntN(3) {
			j := rng.IntN(len(docs))
			switch rng.IntN(6) {
			case 0, 1:
				docs[j] = workloadEntry(fmt.Sprintf("we-%d-%d", i, j), fmt.Sprintf("10.%d.%d.%d", i, rng.IntN(250), j+1))
			case 2:
				docs[j] = strings.Replace(docs[j], "address:", "adress:", 1)
			case 3: // a name another file may hold
				docs[j] = workloadEntry(fmt.Sprintf("we-%d-%d", rng.IntN(files), rng.IntN(perFile)), "10.200.0.1")
			case 4:
				if len(docs) > 1 {
					docs = slices.Delete(docs, j, j+1)
				}
			case 5:
				docs = slices.Insert(docs, j, workloadEntry(fmt.Sprintf("we-%d-r%d", i, round), "10.201.0.1"))
			}
		}
		content[i] = docs
		write(t, dir, fmt.Sprintf("we-%02d.yaml", i), strings.Join(docs, "---\n"))
		sameLoad(t, l, dir)
	}
}

// BenchmarkReloadChurn is bench/scale's file churn: 10 files of 100
// WorkloadEntries each, of which 10 per file get a new address, every
// file rewritten. A Loader parses the 100 changed documents.
//
//	go test ./controlplane/internal/config -run '^$' -bench ReloadChurn -count 5
func BenchmarkReloadChurn(b *testing.B) {
	const files, perFile, moved = 10, 100, 10
	dir := writeFleet(b, files, perFile)
	l := config.NewLoader()
	if _, err := l.Load(dir); err != nil {
		b.Fatal(err)
	}
	docs := make([][]string, files)
	for i := range docs {
		docs[i] = strings.Split(fleetFile(i, perFile, 0), "---\n")
	}
	gen := 0
	for b.Loop() {
		b.StopTimer()
		for i := range files {
			for range moved {
				gen++
				j := gen % perFile
				docs[i][j] = workloadEntry(fmt.Sprintf("we-%d-%d", i, j), fmt.Sprintf("10.%d.%d.%d", i, gen%250, j+1))
			}
			write(b, dir, fmt.Sprintf("we-%02d.yaml", i), strings.Join(docs[i], "---\n"))
		}
		b.StartTimer()
		if _, err := l.Load(dir); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(l.Parsed()), "docs/op")
}

// A resource's own checks (here a WorkloadEntry's address) are made when
// its document is parsed: a file taken from memory keeps reporting what
// they found while other files change, in the order of its documents, and
// a duplicate's are dropped with the rest of it.
func TestLoaderKeepsAResourcesOwnErrors(t *testing.T) {
	dir := writeFleet(t, 3, 2)
	l := config.NewLoader()
	sameLoad(t, l, dir)
	bad := strings.Replace(fleetFile(1, 3, 0), "address: 10.1.0.1", "address: not-an-ip", 1)
	bad = strings.Replace(bad, "address: 10.1.0.3", "address: also-not-an-ip", 1)
	write(t, dir, "we-01.yaml", bad)
	wantErrs := []want{
		{"we-01.yaml", "WorkloadEntry default/we-1-0", "spec.address", `"not-an-ip" is not an IP address`},
		{"we-01.yaml", "WorkloadEntry default/we-1-2", "spec.address", `"also-not-an-ip" is not an IP address`},
	}
	for gen := range 3 {
		sameLoad(t, l, dir)
		reused := l.Reused()
		_, err := l.Load(dir)
		errs := fieldErrors(t, err)
		checkErrors(t, errs, wantErrs...)
		if len(errs) != len(wantErrs) {
			t.Fatalf("load %d: %d errors, want %d: %v", gen+1, len(errs), len(wantErrs), err)
		}
		if !strings.Contains(errs[0].Resource, "we-1-0") {
			t.Errorf("load %d: first error is of %s, want we-1-0's, in the order of the documents", gen+1, errs[0].Resource)
		}
		if gen > 0 && reused != 3 { // the service, we-00.yaml and we-01.yaml
			t.Errorf("load %d reused %d files, want 3", gen+1, reused)
		}
		write(t, dir, "we-02.yaml", fleetFile(2, 2, gen+1))
	}

	// we-1-0 defined first in a.yaml: its invalid definition in the
	// unchanged we-01.yaml is a duplicate, and only that is said of it.
	write(t, dir, "a.yaml", workloadEntry("we-1-0", "10.9.9.9"))
	sameLoad(t, l, dir)
	_, err := l.Load(dir)
	errs := fieldErrors(t, err)
	checkErrors(t, errs,
		want{"we-01.yaml", "WorkloadEntry default/we-1-0", "metadata.name", "is also defined in a.yaml"},
		wantErrs[1])
	if len(errs) != 2 {
		t.Errorf("%d errors, want 2: %v", len(errs), err)
	}
}
