package config

import (
	"bytes"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// Loader is Load with a memory of the files it has parsed: a reload
// parses again only the documents whose content changed, and takes the
// resources of the others from its last load. Parsing (YAML to a map to
// a proto) is most of the cost of a load, and a change usually touches
// one file of many, and a few documents of that file (a tool that
// rewrites a file of 100 WorkloadEntries to move ten of them). The
// documents to parse, of all the files that changed, are parsed in
// parallel, on runtime.GOMAXPROCS goroutines.
//
// What spans files, the check that each resource is defined once and the
// validation of the set (references, host claims, subsets, selected
// WorkloadEntries), still runs at each load, so a Loader returns what
// Load would, errors included. Only the WorkloadEntry check reuses what
// it found: for an entry taken from memory, while the ServiceEntries that
// select entries are too (see validateWorkloadEntries). Every file is
// still read at each load and compared with what the Loader holds of it:
// its content, not its mtime, says whether it changed.
//
// A resource taken from memory is the same value as at the last load
// (its spec is the same pointer), so what the load's caller built from it
// can be kept too.
//
// A Loader is safe for concurrent use; loads run one at a time.
type Loader struct {
	mu    sync.Mutex
	opts  options
	cache fileCache
}

// NewLoader returns a Loader whose loads use opts.
func NewLoader(opts ...Option) *Loader {
	return &Loader{opts: newOptions(opts), cache: fileCache{files: map[string]*parsedFile{}}}
}

// Load is Load(dir) with the Loader's options, reusing the parse of every
// file, and of every document, whose content is the same as at the last
// load.
func (l *Loader) Load(dir string) (*model.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return load(dir, l.opts, &l.cache)
}

// Reused returns how many files the last Load took whole from its memory
// rather than parsing them again.
func (l *Loader) Reused() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cache.reused
}

// Parsed returns how many documents the last Load parsed, in the files
// that changed; the other documents of those files came from memory.
func (l *Loader) Parsed() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cache.parsed
}

// fileCache holds the parse of each file by name, with the content it
// was parsed from. A nil *fileCache parses every file.
type fileCache struct {
	files  map[string]*parsedFile
	reused int // files of the last load taken from the cache
	parsed int // documents the last load parsed
	sel    selection
}

// selection returns the cache's memory for validateWorkloadEntries, or
// nil for a nil cache.
func (c *fileCache) selection() *selection {
	if c == nil {
		return nil
	}
	return &c.sel
}

// parsedFile is what parsing one file on its own gave: the parse of
// each of its documents, in order.
type parsedFile struct {
	content []byte
	docs    []*parsedDoc
}

// parsedDoc is the parse of one document on its own: a parser whose seen
// map is unused, and marks that cut its output into sections. The same
// bytes at the same place in a file (index) parse the same: a document's
// parse reads nothing but its file's name, its index and its bytes.
type parsedDoc struct {
	index   int    // as parser.document takes it: 0 for a file's only document
	content []byte // a slice of the content of the file that holds it
	p       *parser
}

// mark is where a section of a document's parse starts in each of the
// parser's outputs. claim is set on the section that begins where a
// document claims its kind, namespace and name; whether the rest of the
// document counts depends on the files before it, so merge decides.
type mark struct {
	errs, resources, skipped, rateLimits int
	claim                                *claimed
}

type claimed struct {
	key     string
	r       *resource
	resName string
}

// parseAll returns the parse of each file of names, in that order: from
// the cache for a file whose content is the same, else made of the
// documents the cache holds for it and of those that changed. It then
// makes these files the cache, dropping those that are gone. A nil
// *fileCache parses every document.
//
// The documents to parse, of every file, are parsed at once on
// runtime.GOMAXPROCS goroutines: each parse reads only its own bytes and
// writes only its own parser, and a churn that rewrites ten files
// changes documents in all of them.
func (c *fileCache) parseAll(names []string, files map[string][]byte, o options) []*parsedFile {
	out := make([]*parsedFile, len(names))
	var jobs []docJob
	var next map[string]*parsedFile
	if c != nil {
		c.reused = 0
		next = make(map[string]*parsedFile, len(names))
	}
	for i, name := range names {
		content := files[name]
		var prev *parsedFile
		if c != nil {
			prev = c.files[name]
			if prev != nil && bytes.Equal(prev.content, content) {
				out[i], next[name] = prev, prev
				c.reused++
				continue
			}
		}
		out[i], jobs = planFile(name, content, prev, jobs)
		if c != nil {
			next[name] = out[i]
		}
	}
	parseDocs(jobs, o)
	if c != nil {
		c.files, c.parsed = next, len(jobs)
	}
	return out
}

// docJob is a document to parse: document i of f.
type docJob struct {
	f    *parsedFile
	i    int
	name string
}

// planFile splits one file into its documents, taking from prev, the
// parse of an earlier content of the same file (or nil), each document
// that has the same bytes at the same index, and appends a job for each
// of the others to jobs.
func planFile(name string, content []byte, prev *parsedFile, jobs []docJob) (*parsedFile, []docJob) {
	docs := splitDocuments(content)
	f := &parsedFile{content: content, docs: make([]*parsedDoc, len(docs))}
	for i, doc := range docs {
		index := 0
		if len(docs) > 1 {
			index = i + 1
		}
		if prev != nil && i < len(prev.docs) {
			if d := prev.docs[i]; d.index == index && bytes.Equal(d.content, doc) {
				// The same bytes, now in this content: the old one
				// is not kept for it.
				d.content = doc
				f.docs[i] = d
				continue
			}
		}
		f.docs[i] = &parsedDoc{index: index, content: doc}
		jobs = append(jobs, docJob{f: f, i: i, name: name})
	}
	return f, jobs
}

// parseDocs runs jobs on at most runtime.GOMAXPROCS goroutines, the
// caller's one of them, and returns when all are done. Each job writes
// the parser of its own document.
func parseDocs(jobs []docJob, o options) {
	run := func(j *docJob) {
		d := j.f.docs[j.i]
		p := &parser{opts: o}
		p.cut(nil)
		p.document(j.name, d.index, d.content)
		d.p = p
	}
	workers := min(runtime.GOMAXPROCS(0), len(jobs))
	if workers <= 1 {
		for i := range jobs {
			run(&jobs[i])
		}
		return
	}
	var next atomic.Int64
	work := func() {
		for i := next.Add(1) - 1; i < int64(len(jobs)); i = next.Add(1) - 1 {
			run(&jobs[i])
		}
	}
	var wg sync.WaitGroup
	for range workers - 1 {
		wg.Go(work)
	}
	work()
	wg.Wait()
}

// cut starts a section of a file's parse.
func (p *parser) cut(c *claimed) {
	p.marks = append(p.marks, mark{
		errs: len(p.errs), resources: len(p.resources), skipped: len(p.skipped), rateLimits: len(p.rateLimits),
		claim: c,
	})
}

// claim marks where the document of r claims key; merge refuses it there
// if an earlier document holds the key.
func (p *parser) claim(key string, r *resource, resName string) {
	p.cut(&claimed{key: key, r: r, resName: resName})
}

// merge adds the parse of one file to p, as if p had parsed it after the
// files merged before: a document that claims a name already held is
// refused at its claim, and what its parse found after the claim is
// dropped.
func (p *parser) merge(f *parsedFile) {
	for _, d := range f.docs {
		p.mergeDoc(d.p)
	}
}

// mergeDoc adds the parse of one document to p.
func (p *parser) mergeDoc(src *parser) {
	end := mark{
		errs: len(src.errs), resources: len(src.resources), skipped: len(src.skipped), rateLimits: len(src.rateLimits),
	}
	for i, m := range src.marks {
		next := end
		if i+1 < len(src.marks) {
			next = src.marks[i+1]
		}
		if c := m.claim; c != nil {
			if first, dup := p.seen[c.key]; dup {
				p.add(c.r.meta.File, c.resName, "metadata.name", "%s is also defined in %s (define each resource once)", c.r.meta.String(), first.where())
				continue
			}
			p.seen[c.key] = c.r
		}
		p.errs = append(p.errs, src.errs[m.errs:next.errs]...)
		p.resources = append(p.resources, src.resources[m.resources:next.resources]...)
		p.skipped = append(p.skipped, src.skipped[m.skipped:next.skipped]...)
		p.rateLimits = append(p.rateLimits, src.rateLimits[m.rateLimits:next.rateLimits]...)
	}
}
