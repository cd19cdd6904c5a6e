//go:build unix

package main

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapInput maps f, read-only, when it is a regular file that is not empty
// and has not been read from yet, so that its position in the input is 0
// (a bufio.Reader over it may have peeked; a Seek would tell, but a
// freshly opened file is what replay passes). It returns nil when f is
// anything else or the mapping fails: the caller reads f instead.
//
// The mapping assumes the file does not shrink while it is replayed (a
// truncated mapped file faults on access), as a replay of a capture does.
func mapInput(f *os.File) ([]byte, func() error) {
	st, err := f.Stat()
	if err != nil || !st.Mode().IsRegular() || st.Size() == 0 || st.Size() != int64(int(st.Size())) {
		return nil, nil
	}
	data, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil
	}
	_ = unix.Madvise(data, unix.MADV_SEQUENTIAL) // read-ahead; only a hint
	return data, func() error { return unix.Munmap(data) }
}
