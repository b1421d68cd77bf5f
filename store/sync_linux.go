package store

import (
	"os"
	"syscall"
)

// datasync makes f's data durable, and the metadata needed to read it (its size):
// what an append needs, without the inode's times.
func datasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
