package config

import (
	"crypto/sha256"
	"slices"
	"sync"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// Loader is Load with a memory of the files it has parsed: a reload
// parses again only the documents whose content changed, and takes the
// resources of the others from its last load. Parsing (YAML to JSON to a
// map to a proto) is most of the cost of a load, and a change usually
// touches one file of many, and a few documents of that file (a tool
// that rewrites a file of 100 WorkloadEntries to move ten of them).
// What spans files, the check that each resource is defined once and the
// validation of the set (references, host claims, subsets), still runs
// over every file at each load, so a Loader returns what Load would,
// errors included. Every file is still read and hashed at each load: its
// content, not its mtime, says whether it changed.
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

// fileCache holds the parse of each file by name, with the hash of the
// content it was parsed from. A nil *fileCache parses every file.
type fileCache struct {
	files  map[string]*parsedFile
	reused int // files of the last load taken from the cache
	parsed int // documents the last load parsed
	next   map[string]*parsedFile
}

// parsedFile is what parsing one file on its own gave: the parse of
// each of its documents, in order.
type parsedFile struct {
	sum  [sha256.Size]byte
	docs []*parsedDoc
}

// parsedDoc is the parse of one document on its own: a parser whose seen
// map is unused, and marks that cut its output into sections. The same
// bytes at the same place in a file (index) parse the same: a document's
// parse reads nothing but its file's name, its index and its bytes.
type parsedDoc struct {
	key docKey
	p   *parser
}

// docKey is what a document's parse depends on besides the file name.
type docKey struct {
	index int // as parser.document takes it: 0 for a file's only document
	sum   [sha256.Size]byte
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

// parse returns the parse of one file, from the cache if it holds one for
// the same content, else made of the documents the cache holds for it and
// of those that changed, parsed now.
func (c *fileCache) parse(name string, content []byte, o options) *parsedFile {
	if c == nil {
		f, _ := parseFile(name, content, o, nil)
		return f
	}
	if c.next == nil {
		c.next = map[string]*parsedFile{}
		c.reused, c.parsed = 0, 0
	}
	sum := sha256.Sum256(content)
	f := c.files[name]
	if f != nil && f.sum == sum {
		c.reused++
	} else {
		var n int
		f, n = parseFile(name, content, o, f)
		f.sum = sum
		c.parsed += n
	}
	c.next[name] = f
	return f
}

// keep makes the files of this load the cache, dropping those that are
// gone.
func (c *fileCache) keep() {
	if c == nil {
		return
	}
	if c.next == nil { // an empty directory
		c.reused, c.parsed = 0, 0
	}
	c.files, c.next = c.next, nil
	if c.files == nil {
		c.files = map[string]*parsedFile{}
	}
}

// parseFile parses one file on its own, taking from prev, the parse of
// an earlier content of the same file (or nil), each document that is
// the same at the same index. It returns how many documents it parsed.
func parseFile(name string, content []byte, o options, prev *parsedFile) (*parsedFile, int) {
	var old map[docKey]*parsedDoc
	if prev != nil {
		old = make(map[docKey]*parsedDoc, len(prev.docs))
		for _, d := range prev.docs {
			old[d.key] = d
		}
	}
	docs := splitDocuments(content)
	f := &parsedFile{docs: make([]*parsedDoc, len(docs))}
	parsed := 0
	for i, doc := range docs {
		index := 0
		if len(docs) > 1 {
			index = i + 1
		}
		key := docKey{index: index, sum: sha256.Sum256(doc)}
		if d := old[key]; d != nil {
			f.docs[i] = d
			continue
		}
		p := &parser{opts: o}
		p.cut(nil)
		p.document(name, index, doc)
		f.docs[i] = &parsedDoc{key: key, p: p}
		parsed++
	}
	return f, parsed
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
	marks := append(slices.Clip(src.marks), mark{
		errs: len(src.errs), resources: len(src.resources), skipped: len(src.skipped), rateLimits: len(src.rateLimits),
	})
	for i, m := range marks[:len(marks)-1] {
		next := marks[i+1]
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
