package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// errDirLink is returned by readFile for a symbolic link to a directory,
// which Load skips.
var errDirLink = errors.New("a link to a directory")

// readFile returns the content of the config file at path, or an error
// whose text says why it cannot be used (it becomes a FieldError's
// Reason). It reads a regular file, or a symbolic link to one, of at most
// limit bytes. The type and size are checked before the file is opened:
// opening a named pipe blocks until a writer comes, and a device such as
// /dev/zero never ends.
func readFile(path string, limit int64) ([]byte, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	link := ""
	if fi.Mode()&fs.ModeSymlink != 0 {
		// Kubernetes mounts a ConfigMap as symlinks to files; follow
		// those, but not links to directories.
		if link, err = os.Readlink(path); err != nil {
			return nil, fmt.Errorf("cannot read: %w", err)
		}
		if fi, err = os.Stat(path); err != nil {
			return nil, fmt.Errorf("cannot read: %w", err)
		}
		if fi.IsDir() {
			return nil, errDirLink
		}
	}
	if err := check(fi, link, limit); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should a pipe replace the file after the check, opening
	// it still returns at once, and the check below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	if err := check(fi, link, limit); err != nil {
		return nil, err
	}
	// Room for the size read, and for the read that finds the end,
	// so that the buffer is not grown on the way.
	buf := bytes.NewBuffer(make([]byte, 0, min(fi.Size(), limit)+bytes.MinRead))
	if _, err := buf.ReadFrom(io.LimitReader(f, limit+1)); err != nil {
		return nil, fmt.Errorf("cannot read: %w", err)
	}
	b := buf.Bytes()
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("grew past the %s limit for a config file while it was read (split it into smaller files)", formatSize(limit))
	}
	return b, nil
}

// check refuses a file that is not regular or is over limit bytes. link is
// the target of the symbolic link that led to fi, or "".
func check(fi fs.FileInfo, link string, limit int64) error {
	if !fi.Mode().IsRegular() {
		kind := fileKind(fi.Mode())
		if link != "" {
			article := "a "
			if kind == "irregular file" {
				article = "an "
			}
			kind = "a link to " + link + ", " + article + kind
		}
		return fmt.Errorf("not a regular file (%s); remove it", kind)
	}
	if size := fi.Size(); size > limit {
		s := formatSize(size)
		if size-limit < limit/20 {
			// Rounded, it could read as the limit itself.
			s = fmt.Sprintf("%d bytes", size)
		}
		return fmt.Errorf("%s is over the %s limit for a config file (split it into smaller files)", s, formatSize(limit))
	}
	return nil
}

// fileKind names the type of a file that is not regular.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "named pipe"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "block device"
	case m.IsDir():
		return "directory"
	}
	return "irregular file"
}

// formatSize gives n bytes in MiB, KiB or bytes, whole where it can.
func formatSize(n int64) string {
	for _, u := range []struct {
		size int64
		name string
	}{{1 << 20, "MiB"}, {1 << 10, "KiB"}} {
		switch {
		case n >= u.size && n%u.size == 0:
			return fmt.Sprintf("%d %s", n/u.size, u.name)
		case n >= u.size:
			return fmt.Sprintf("%.1f %s", float64(n)/float64(u.size), u.name)
		}
	}
	if n == 1 {
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
