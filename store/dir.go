package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// The files of a data directory besides the segments.
const (
	lockName    = "LOCK"
	versionName = "VERSION"
	segExt      = ".log"
	tmpExt      = ".tmp"     // a segment being written by compaction; removed at Open
	corruptExt  = ".corrupt" // a damaged segment set aside for inspection; never read
)

// versionLine is the VERSION file's content for format v.
func versionLine(v int) string { return "starling store format " + strconv.Itoa(v) + "\n" }

func segName(num uint32) string { return fmt.Sprintf("%06d%s", num, segExt) }

// parseSegName returns the number of a segment file name.
func parseSegName(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, segExt)
	if !ok || s == "" {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil && n > 0
}

// makeDir creates dir when it does not exist, durably, and refuses a directory
// that holds files but no VERSION: it is someone else's, and gets no lock file.
func makeDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("store: %w", err)
		}
		return syncDir(filepath.Dir(filepath.Clean(dir)))
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	for _, e := range entries {
		if n := e.Name(); n == versionName {
			return nil
		}
	}
	return checkEmpty(dir, entries)
}

// checkEmpty refuses a directory without a VERSION that holds anything but what an
// interrupted initialisation leaves.
func checkEmpty(dir string, entries []os.DirEntry) error {
	for _, e := range entries {
		if n := e.Name(); n != lockName && n != versionName+tmpExt {
			return fmt.Errorf("%w: %s is not empty and has no VERSION file, so it is not a starling data directory: refusing to use it", ErrFormat, dir)
		}
	}
	return nil
}

// lockDir takes the directory's lock file for the life of the process: flock locks
// belong to an open file, so a second Open fails even inside one process, and the
// lock goes with the process however it ends.
func lockDir(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	if err := flock(f); err != nil {
		holder := ""
		if b, rerr := os.ReadFile(path); rerr == nil {
			if pid := strings.TrimSpace(string(b)); pid != "" {
				holder = " (pid " + pid + ")"
			}
		}
		f.Close()
		if errors.Is(err, errWouldBlock) {
			return nil, fmt.Errorf("%w: %s is held by another starling process%s; stop it or use another --data-dir", ErrLocked, dir, holder)
		}
		return nil, fmt.Errorf("store: lock %s: %w", path, err)
	}
	// The pid is a note for the message above; the lock is the flock.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return f, nil
}

// checkVersion reads the directory's VERSION, or writes it when the directory is
// new: empty but for the lock file.
func checkVersion(dir string) error {
	b, err := os.ReadFile(filepath.Join(dir, versionName))
	if errors.Is(err, fs.ErrNotExist) {
		return initVersion(dir)
	}
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	s, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "starling store format ")
	v, err := strconv.Atoi(s)
	switch {
	case !ok || err != nil:
		return fmt.Errorf("%w: %s has a VERSION file that is not Starling's (%q)", ErrFormat, dir, firstLine(b))
	case v > formatVersion:
		return fmt.Errorf("%w: %s was written by a newer starling (store format %d; this one reads %d): run the newer starling, or use another --data-dir", ErrFormat, dir, v, formatVersion)
	case v < formatVersion:
		return fmt.Errorf("%w: %s has store format %d, which this starling no longer reads (it reads %d)", ErrFormat, dir, v, formatVersion)
	}
	return nil
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return s
}

func initVersion(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := checkEmpty(dir, entries); err != nil {
		return err
	}
	tmp := filepath.Join(dir, versionName+tmpExt)
	if err := writeFileSync(tmp, []byte(versionLine(formatVersion))); err != nil {
		return err
	}
	if err := os.Rename(tmp, filepath.Join(dir, versionName)); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return syncDir(dir)
}

func writeFileSync(path string, b []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: write %s: %w", path, err)
	}
	return nil
}

// syncDir makes the directory's entries (files created, renamed, removed) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("store: sync %s: %w", dir, err)
	}
	return nil
}

// readSegment reads a whole file into buf, growing it when needed.
func readSegment(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return buf, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return buf, err
	}
	n := st.Size()
	if n > 1<<32 {
		return buf, fmt.Errorf("%s is %d bytes, more than a segment can be", path, n)
	}
	if int64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := f.ReadAt(buf, 0); err != nil {
		return buf, err
	}
	return buf, nil
}
