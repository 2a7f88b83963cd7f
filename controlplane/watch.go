package controlplane

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/meshlet/meshlet/controlplane/internal/debounce"
	"github.com/meshlet/meshlet/controlplane/internal/xdsserver"
)

// rewatchInterval is how often the watcher looks for the config
// directory while it is gone (deleted, or renamed away): its watches went
// with it, and nothing else says when a new one is in place.
const rewatchInterval = 200 * time.Millisecond

// firstQuietShare sets the config debounce's shortest quiet time, for a
// lone change or writes that come close together, as a share of its
// longest (WithDebounce's After): 5 ms of the default 20 ms. One save's
// events, or a tool rewriting ten files, come well under a millisecond
// apart; writes further apart wait up to After, and so does a change
// within After of the last reload. A burst whose second write comes more
// than After/4 after its first costs one reload more than a fixed After
// (about 10 ms of CPU, and a push of what the first write changed).
const firstQuietShare = 4

// newDirWatcher watches dir and every directory under it. Editors and
// Kubernetes ConfigMaps replace files by rename, so the directories are
// watched, not the files.
func newDirWatcher(dir string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	if err := addTree(w, dir); err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// addTree watches dir, which must be a directory, and every directory
// under it except hidden ones. Kubernetes keeps a ConfigMap's files in a
// "..<timestamp>" directory, which is watched.
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		switch {
		case path == dir && !d.IsDir():
			return fmt.Errorf("%s is not a directory", dir)
		case !d.IsDir():
			return nil
		case path != dir && hidden(d.Name()):
			return filepath.SkipDir
		}
		return w.Add(path)
	})
}

func hidden(name string) bool {
	return strings.HasPrefix(name, ".") && !strings.HasPrefix(name, "..")
}

// rewatch drops every watch and watches dir afresh. Watches follow inodes,
// not paths: after the directory is deleted and made again, or renamed
// away and replaced, the old watches see nothing of the new one.
func rewatch(w *fsnotify.Watcher, dir string) error {
	for _, p := range w.WatchList() {
		_ = w.Remove(p) // gone already if its directory was deleted
	}
	return addTree(w, dir)
}

// watchConfig reloads the config directory after it changes, once writes
// have settled (WithDebounce). If the directory goes away, the
// config in force stays, and the directory is looked for every
// rewatchInterval and watched again when it is back.
func (s *Server) watchConfig(ctx context.Context, w *fsnotify.Watcher) {
	defer w.Close()
	dir := filepath.Clean(s.opts.configDir) // as fsnotify names it
	clk := s.opts.clock
	win := debounce.New(debounce.Settings{After: s.opts.debounce.After, First: s.opts.debounce.After / firstQuietShare, Max: s.opts.debounce.Max})
	// Each change moves the timer to the window's due time; when it fires,
	// the window is taken unless a change came since.
	fire := make(chan struct{}, 1)
	stop := func() bool { return false }
	defer func() { stop() }()
	arm := func(due time.Time) {
		stop()
		stop = clk.AfterFunc(due.Sub(clk.Now()), func() {
			select {
			case fire <- struct{}{}:
			default:
			}
		})
	}
	retry := time.NewTicker(rewatchInterval)
	retry.Stop()
	defer retry.Stop()
	watching := true
	var first time.Time // of the changes the debounce waits on, for the push latency
	settle := func() {
		if first.IsZero() {
			first = time.Now()
		}
		arm(win.Add(clk.Now()))
	}
	again := func() {
		if err := rewatch(w, dir); err != nil {
			if watching {
				s.log.Warn("config directory is gone; the config in force stays until it is back", "dir", dir, "err", err)
				retry.Reset(rewatchInterval)
			}
			watching = false
			return
		}
		if !watching {
			s.log.Info("config directory is back; watching it again", "dir", dir)
			retry.Stop()
		}
		watching = true
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			switch {
			case ev.Name == dir && ev.Has(fsnotify.Remove|fsnotify.Rename):
				again()
			case !configEvent(ev.Name):
				// A log or an editor's swap file next to the config:
				// reloading for it would loop if the log is ours.
				continue
			case ev.Has(fsnotify.Create) && !hidden(filepath.Base(ev.Name)):
				// A new directory must be watched too, and what it
				// already holds (it may have been moved in).
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					_ = addTree(w, ev.Name)
				}
			}
			settle()
		case <-retry.C:
			if again(); watching {
				settle()
			}
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			// Events may have been lost (a queue overflow), the removal
			// of the directory among them.
			s.log.Warn("config watch error", "err", err)
			again()
			settle()
		case <-fire:
			b, ok := win.Take(clk.Now())
			if !ok {
				if due, ok := win.Due(); ok {
					arm(due)
				}
				continue
			}
			s.log.Info("config changed; reloading", "dir", dir, "events", b.Events, "waited", b.Wait)
			s.metrics.debounced(b)
			s.reload(xdsserver.Change{At: first, Cause: causeConfig})
			first = time.Time{}
		}
	}
}

// Reload reads the config directory again. A valid config replaces the one
// served; an invalid one is refused, logged and shown on /debug/config,
// and the config before it stays in force. It returns the refusal.
func (s *Server) Reload() error { return s.reload(change(causeConfig)) }

// reload is Reload for the change c, whose detection starts the push
// latency.
func (s *Server) reload(c xdsserver.Change) (err error) {
	defer func() { s.metrics.reloaded(err) }()
	t0 := time.Now()
	cfg, err := s.loader.Load(s.opts.configDir)
	loadTook := time.Since(t0)
	if err != nil {
		s.mu.Lock()
		s.lastErr = &ConfigError{Time: time.Now(), Message: err.Error()}
		s.mu.Unlock()
		s.log.Error("config refused; the previous config stays in force", "dir", s.opts.configDir, "err", err)
		return err
	}
	s.mu.Lock()
	prev, prevAt := s.cfg, s.cfgAt
	s.cfg, s.cfgAt = cfg, time.Now()
	s.mu.Unlock()
	bt, err := s.build(c)
	if err != nil {
		s.mu.Lock()
		s.cfg, s.cfgAt = prev, prevAt
		s.lastErr = &ConfigError{Time: time.Now(), Message: err.Error()}
		s.mu.Unlock()
		s.log.Error("config refused; the previous config stays in force", "dir", s.opts.configDir, "err", err)
		return err
	}
	s.mu.Lock()
	if s.lastErr != nil {
		s.prevErr = &PreviousRefusal{ConfigError: *s.lastErr, ReplacedAt: s.cfgAt}
		s.lastErr = nil
	}
	s.mu.Unlock()
	s.logLoaded(diffConfig(prev, cfg), stageTimes{
		sinceChange: time.Since(c.At), load: loadTook, parsed: s.loader.Parsed(),
		translate: bt.translate, serve: bt.serve,
	})
	return nil
}

// configEvent reports whether a change to name can change the config: a
// YAML file, or a name without an extension (a directory, or a Kubernetes
// ConfigMap's ..data link), not a log or an editor's swap file.
func configEvent(name string) bool {
	switch strings.ToLower(filepath.Ext(name)) {
	case ".yaml", ".yml", "":
		return true
	}
	return strings.HasPrefix(filepath.Base(name), "..")
}
