//go:build !linux

package store

import "os"

// datasync makes f durable (fsync: F_FULLFSYNC on darwin).
func datasync(f *os.File) error { return f.Sync() }
