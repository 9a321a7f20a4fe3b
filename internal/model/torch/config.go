package torch

import (
	"fmt"
	"os"
	"strings"
)

// Options say which shim to open and how many intra-op threads libtorch uses (config section
// torch.*).
type Options struct {
	// Library is the path of libhpatorch.so; empty means DefaultLibrary.
	Library string
	// Threads is libtorch's intra-op thread count; 0 keeps libtorch's default (one per core).
	Threads int
}

// OpenWith opens the shim of o and applies o.Threads when positive.
func OpenWith(o Options) (*Lib, error) {
	if o.Threads < 0 {
		return nil, fmt.Errorf("torch: threads must be >= 0, got %d", o.Threads)
	}
	path := o.Library
	if path == "" {
		path = DefaultLibrary
	}
	l, err := Open(path)
	if err != nil {
		return nil, err
	}
	if o.Threads > 0 {
		if err := l.SetNumThreads(o.Threads); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// AllocatorMapped reports whether tcmalloc is mapped into this process (from /proc/self/maps), the
// run-time check that the fast allocator is really in use.
func AllocatorMapped() (bool, error) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return false, err
	}
	return strings.Contains(string(b), "libtcmalloc"), nil
}
