package security

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// reloadDelay is how long a FileSource waits after the last change to its
// files before it reads them. Writers change the three files one after the
// other; reading after the last change avoids pairing a new certificate
// with the old key.
const reloadDelay = 100 * time.Millisecond

// FileSource is a Source read from PEM files, as cert-manager (csi-driver
// or a Secret volume) and spiffe-helper write them, and re-read when they
// change. Its methods are safe for concurrent use and do not block.
type FileSource struct {
	certFile, keyFile, bundleFile string
	log                           *slog.Logger

	cur atomic.Pointer[fileMaterial]

	files   map[string]bool // the three files, cleaned absolute paths
	dirs    map[string]bool // their directories
	watcher *fsnotify.Watcher
	done    chan struct{}
	wg      sync.WaitGroup

	closeOnce sync.Once
	closeErr  error
}

type fileMaterial struct {
	material
	raw [3][]byte // cert, key and bundle file contents
}

var _ Source = (*FileSource)(nil)

// NewFileSource reads an X.509 SVID and its trust bundle from PEM files:
//   - certFile: the SVID, leaf first, optionally followed by intermediates;
//     the SPIFFE ID is the leaf's URI SAN;
//   - keyFile: the leaf's private key, PKCS #8, SEC 1 (EC) or PKCS #1 (RSA);
//   - bundleFile: one or more root certificates of the SVID's trust domain.
//
// The first read must succeed: an unreadable or unparsable file, an expired
// certificate or bundle, or a certificate that does not chain to the bundle
// is an error that names the file. ctx bounds only this first read.
//
// The files' directories are then watched, and the files re-read shortly
// after any of them changes, whether written in place, replaced by a rename,
// or swapped in by Kubernetes' "..data" symlink. A re-read that fails keeps
// the previous material and is logged at Error. Close stops the watching.
func NewFileSource(ctx context.Context, certFile, keyFile, bundleFile string, opts ...FileOption) (*FileSource, error) {
	var o fileOptions
	for _, opt := range opts {
		opt.applyFile(&o)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("security: file source: %w", err)
	}
	s := &FileSource{
		log:   orDefault(o.log),
		files: map[string]bool{},
		dirs:  map[string]bool{},
		done:  make(chan struct{}),
	}
	for _, p := range []*string{&certFile, &keyFile, &bundleFile} {
		if *p == "" {
			return nil, errors.New("security: file source: the certificate, key and bundle file names must all be set")
		}
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, fmt.Errorf("security: file source: %s: %w", *p, err)
		}
		*p = abs
		s.files[abs] = true
		s.dirs[filepath.Dir(abs)] = true
	}
	s.certFile, s.keyFile, s.bundleFile = certFile, keyFile, bundleFile

	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.cur.Store(m)

	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("security: file source: watch files: %w", err)
	}
	for dir := range s.dirs {
		if err := w.Add(dir); err != nil {
			return nil, errors.Join(fmt.Errorf("security: file source: watch directory %s: %w", dir, err), w.Close())
		}
	}
	s.watcher = w
	s.wg.Add(1)
	go s.watch()
	return s, nil
}

// GetX509SVID returns the SVID from the last good read. It implements
// x509svid.Source.
func (s *FileSource) GetX509SVID() (*x509svid.SVID, error) {
	return s.cur.Load().getSVID()
}

// GetX509BundleForTrustDomain returns the bundle from the last good read if
// td is the SVID's trust domain. It implements x509bundle.Source.
func (s *FileSource) GetX509BundleForTrustDomain(td spiffeid.TrustDomain) (*x509bundle.Bundle, error) {
	b, err := s.cur.Load().getBundle(td)
	if err != nil {
		return nil, fmt.Errorf("security: file source %s: %w", s.bundleFile, err)
	}
	return b, nil
}

// Close stops watching the files and waits for the watching goroutine to
// end. The source keeps returning the last material it read.
func (s *FileSource) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		s.closeErr = s.watcher.Close()
		s.wg.Wait()
	})
	return s.closeErr
}

func (s *FileSource) watch() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-s.done:
			return
		case ev, ok := <-s.watcher.Events:
			if !ok {
				return
			}
			if s.relevant(ev) {
				timer.Reset(reloadDelay)
			}
		case err, ok := <-s.watcher.Errors:
			if !ok {
				return
			}
			// Events may have been lost (a queue overflow, say): read the
			// files again to be sure.
			s.log.Error("security: file source: watching files failed; re-reading them",
				"cert", s.certFile, "error", err)
			timer.Reset(reloadDelay)
		case <-timer.C:
			s.reload()
		}
	}
}

// relevant reports whether ev may have changed one of the files: an event
// on one of them, or on a Kubernetes atomic-writer entry ("..data" and its
// siblings) in one of their directories.
func (s *FileSource) relevant(ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	name := filepath.Clean(ev.Name)
	if s.files[name] {
		return true
	}
	return s.dirs[filepath.Dir(name)] && strings.HasPrefix(filepath.Base(name), "..")
}

func (s *FileSource) reload() {
	prev := s.cur.Load()
	m, err := s.load()
	if err != nil {
		leaf := prev.svid.Certificates[0]
		s.log.Error("security: file source: reload failed; keeping the previous SVID",
			"error", err, "id", prev.svid.ID.String(), "expires", leaf.NotAfter)
		return
	}
	if bytes.Equal(m.raw[0], prev.raw[0]) && bytes.Equal(m.raw[1], prev.raw[1]) && bytes.Equal(m.raw[2], prev.raw[2]) {
		return
	}
	s.cur.Store(m)
	leaf := m.svid.Certificates[0]
	s.log.Info("security: file source: reloaded SVID",
		"id", m.svid.ID.String(), "serial", leaf.SerialNumber.String(), "expires", leaf.NotAfter, "cert", s.certFile)
}

// load reads and checks the three files.
func (s *FileSource) load() (*fileMaterial, error) {
	var m fileMaterial
	for i, f := range []struct{ what, name string }{
		{"certificate", s.certFile}, {"key", s.keyFile}, {"bundle", s.bundleFile},
	} {
		b, err := os.ReadFile(f.name)
		if err != nil {
			return nil, fmt.Errorf("security: file source: read %s file: %w", f.what, err)
		}
		m.raw[i] = b
	}
	keyPEM, err := pkcs8PEM(m.raw[1])
	if err != nil {
		return nil, fmt.Errorf("security: file source: key file %s: %w", s.keyFile, err)
	}
	svid, err := x509svid.Parse(m.raw[0], keyPEM)
	if err != nil {
		return nil, fmt.Errorf("security: file source: certificate file %s with key file %s: %w", s.certFile, s.keyFile, err)
	}
	td := svid.ID.TrustDomain()
	bundle, err := x509bundle.Parse(td, m.raw[2])
	if err != nil {
		return nil, fmt.Errorf("security: file source: bundle file %s: %w", s.bundleFile, err)
	}
	leafErr, bundleErr, chainErr := checkMaterial(svid, bundle, time.Now())
	switch {
	case leafErr != nil:
		return nil, fmt.Errorf("security: file source: certificate file %s: %w", s.certFile, leafErr)
	case bundleErr != nil:
		return nil, fmt.Errorf("security: file source: bundle file %s: %w", s.bundleFile, bundleErr)
	case chainErr != nil:
		return nil, fmt.Errorf("security: file source: certificate file %s, bundle file %s: %w", s.certFile, s.bundleFile, chainErr)
	}
	m.material = material{svid: svid, bundle: bundle}
	return &m, nil
}

// pkcs8PEM returns the first private key in keyPEM as a PKCS #8 PEM block,
// the only form go-spiffe reads. keyPEM may hold it as PKCS #8 ("PRIVATE
// KEY"), SEC 1 ("EC PRIVATE KEY", as openssl and cert-manager write EC
// keys) or PKCS #1 ("RSA PRIVATE KEY"). Other blocks, such as "EC
// PARAMETERS", are skipped.
func pkcs8PEM(keyPEM []byte) ([]byte, error) {
	rest := keyPEM
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New(`no "PRIVATE KEY", "EC PRIVATE KEY" or "RSA PRIVATE KEY" PEM block`)
		}
		var key any
		var err error
		switch block.Type {
		case "PRIVATE KEY":
			return pem.EncodeToMemory(block), nil
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("parse %q PEM block: %w", block.Type, err)
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, fmt.Errorf("convert %q to PKCS #8: %w", block.Type, err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
	}
}
