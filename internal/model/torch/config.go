package torch

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/viper"
)

// Config keys (documented in config.yaml's torch section).
const (
	KeyLibrary = "torch.library" // path of libhpatorch.so (HPA_TORCH_LIBRARY)
	KeyThreads = "torch.threads" // libtorch intra-op threads, 0 = libtorch's default (HPA_TORCH_THREADS)
)

// OpenConfigured opens the shim named by torch.library (DefaultLibrary when unset) and applies
// torch.threads when positive.
func OpenConfigured(v *viper.Viper) (*Lib, error) {
	path := v.GetString(KeyLibrary)
	if path == "" {
		path = DefaultLibrary
	}
	l, err := Open(path)
	if err != nil {
		return nil, err
	}
	if n := v.GetInt(KeyThreads); n > 0 {
		if err := l.SetNumThreads(n); err != nil {
			return nil, err
		}
	} else if n < 0 {
		return nil, fmt.Errorf("torch: %s must be >= 0, got %d", KeyThreads, n)
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
