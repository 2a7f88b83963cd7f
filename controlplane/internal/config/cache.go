package config

import (
	"crypto/sha256"
	"slices"
	"sync"

	"github.com/meshlet/meshlet/controlplane/internal/model"
)

// Loader is Load with a memory of the files it has parsed: a reload
// parses again only the files whose content changed, and takes the
// resources of the others from its last load. Parsing (YAML to JSON to a
// map to a proto) is most of the cost of a load, and a change usually
// touches one file of many. What spans files, the check that each
// resource is defined once and the validation of the set (references,
// host claims, subsets), still runs over every file at each load, so a
// Loader returns what Load would, errors included.
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
// file whose content is the same as at the last load.
func (l *Loader) Load(dir string) (*model.Config, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return load(dir, l.opts, &l.cache)
}

// Reused returns how many files the last Load took from its memory
// rather than parsing them again.
func (l *Loader) Reused() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cache.reused
}

// fileCache holds the parse of each file by name, with the hash of the
// content it was parsed from. A nil *fileCache parses every file.
type fileCache struct {
	files  map[string]*parsedFile
	reused int // files of the last load taken from the cache
	next   map[string]*parsedFile
}

// parsedFile is what parsing one file on its own gave: a parser whose
// seen map is unused, and marks that cut its output into sections.
type parsedFile struct {
	sum [sha256.Size]byte
	p   *parser
}

// mark is where a section of a file's parse starts in each of the
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
// the same content.
func (c *fileCache) parse(name string, content []byte, o options) *parsedFile {
	if c == nil {
		return parseFile(name, content, o)
	}
	if c.next == nil {
		c.next = map[string]*parsedFile{}
		c.reused = 0
	}
	sum := sha256.Sum256(content)
	f := c.files[name]
	if f != nil && f.sum == sum {
		c.reused++
	} else {
		f = parseFile(name, content, o)
		f.sum = sum
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
		c.reused = 0
	}
	c.files, c.next = c.next, nil
	if c.files == nil {
		c.files = map[string]*parsedFile{}
	}
}

// parseFile parses one file on its own.
func parseFile(name string, content []byte, o options) *parsedFile {
	p := &parser{opts: o}
	p.file(name, content)
	return &parsedFile{p: p}
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
	src := f.p
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
