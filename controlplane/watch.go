package controlplane

import (
	"context"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/meshlet/meshlet/controlplane/internal/config"
)

// newDirWatcher watches dir and every directory under it. Editors and
// Kubernetes ConfigMaps replace files by rename, so the directories are
// watched, not the files.
func newDirWatcher(dir string) (*fsnotify.Watcher, error) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, err
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != dir && strings.HasPrefix(d.Name(), ".") && !strings.HasPrefix(d.Name(), "..") {
				return filepath.SkipDir
			}
			return w.Add(path)
		}
		return nil
	})
	if err != nil {
		w.Close()
		return nil, err
	}
	return w, nil
}

// watchConfig reloads the config directory after it changes, once writes
// have settled for the debounce time.
func (s *Server) watchConfig(ctx context.Context, w *fsnotify.Watcher) {
	defer w.Close()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if ev.Has(fsnotify.Create) {
				// A new subdirectory must be watched too; Add fails
				// harmlessly for files.
				_ = w.Add(ev.Name)
			}
			timer.Reset(s.opts.debounce)
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			s.log.Warn("config watch error", "err", err)
			timer.Reset(s.opts.debounce)
		case <-timer.C:
			s.Reload()
		}
	}
}

// Reload reads the config directory again. A valid config replaces the one
// served; an invalid one is refused, logged and shown on /debug/config,
// and the config before it stays in force. It returns the refusal.
func (s *Server) Reload() error {
	cfg, err := config.Load(s.opts.configDir)
	if err != nil {
		s.mu.Lock()
		s.lastErr = &ConfigError{Time: time.Now(), Message: err.Error()}
		s.mu.Unlock()
		s.log.Error("config refused; the previous config stays in force", "dir", s.opts.configDir, "err", err)
		return err
	}
	s.mu.Lock()
	prev := s.cfg
	s.cfg, s.cfgAt = cfg, time.Now()
	s.lastErr = nil
	s.mu.Unlock()
	if err := s.rebuildErr(); err != nil {
		s.mu.Lock()
		s.cfg = prev
		s.lastErr = &ConfigError{Time: time.Now(), Message: err.Error()}
		s.mu.Unlock()
		s.log.Error("config refused; the previous config stays in force", "dir", s.opts.configDir, "err", err)
		return err
	}
	s.log.Info("config loaded", "dir", s.opts.configDir)
	return nil
}
