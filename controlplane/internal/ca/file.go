package ca

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// maxFileSize bounds each file the CA reads: PEM certificates and keys,
// and the tokens file. A chain is a few KiB, and a tokens file of ten
// thousand workloads about 1 MiB.
const maxFileSize = 4 << 20

// readFile reads the regular file, or link to one, at path, of at most
// maxFileSize bytes. The type and size are checked before the file is
// opened: opening a named pipe blocks until a writer comes, and a device
// such as /dev/zero never ends. Errors name the path.
func readFile(path string) ([]byte, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if err := checkFile(path, fi); err != nil {
		return nil, err
	}
	// O_NONBLOCK: should a pipe replace the file after the check, opening
	// it still returns at once, and the check below refuses it.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err = f.Stat(); err != nil {
		return nil, err
	}
	if err := checkFile(path, fi); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxFileSize {
		return nil, fmt.Errorf("%s: grew past the 4 MiB limit while it was read", path)
	}
	return b, nil
}

func checkFile(path string, fi fs.FileInfo) error {
	m := fi.Mode()
	var kind string
	switch {
	case m.IsRegular():
		if fi.Size() > maxFileSize {
			return fmt.Errorf("%s: %d bytes is over the 4 MiB limit for a file the CA reads", path, fi.Size())
		}
		return nil
	case m.IsDir():
		kind = "directory"
	case m&fs.ModeNamedPipe != 0:
		kind = "named pipe"
	case m&fs.ModeSocket != 0:
		kind = "socket"
	case m&fs.ModeCharDevice != 0:
		kind = "character device"
	case m&fs.ModeDevice != 0:
		kind = "block device"
	default:
		kind = "irregular file"
	}
	return fmt.Errorf("%s: not a regular file (%s)", path, kind)
}
