// Package torch is the libtorch training backend: a Go binding to libhpatorch.so, the small C ABI
// shim in csrc/hpatorch that builds the SE-ResNeXt of a model.Spec with libtorch's C++ API.
//
// The shim is loaded at run time with dlopen (Open), so neither the hpa binary nor this package links
// libtorch and inference-only nodes do not need it. scripts/setup.sh compiles the shim into
// .cache/hpatorch/libhpatorch.so (config key torch.library, env HPA_TORCH_LIBRARY).
//
// Importing this package links tcmalloc (libtcmalloc_minimal) into the program, replacing glibc's
// malloc for the whole process: libtorch's CPU training steps are several times slower with glibc
// malloc on small VMs. Build with -tags hpa_glibc_malloc to compare (see Allocator).
//
// Models and optimizers are safe for concurrent use (calls on one model are serialized).
package torch

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>
#include "hpat_dl.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"
)

// ABIVersion is the shim ABI this package speaks (HPAT_ABI_VERSION in csrc/hpatorch/hpatorch.h).
const ABIVersion = 3

// DefaultLibrary is where scripts/setup.sh builds the shim, relative to the repository root
// (the default of config key torch.library).
const DefaultLibrary = ".cache/hpatorch/libhpatorch.so"

// LibraryError says the shim library could not be loaded.
type LibraryError struct {
	Path   string
	Reason string
}

func (e *LibraryError) Error() string {
	return fmt.Sprintf("torch: cannot load training library %s: %s (run scripts/setup.sh to build it, "+
		"or point torch.library / HPA_TORCH_LIBRARY at it)", e.Path, e.Reason)
}

// Error is a failed call into libtorch: Op names the operation, Msg is libtorch's reason.
type Error struct {
	Op  string
	Msg string
}

func (e *Error) Error() string { return "torch: " + e.Op + ": " + e.Msg }

// ErrClosed is returned by calls on a closed model or optimizer.
var ErrClosed = errors.New("torch: use of a closed model or optimizer")

// Lib is a loaded shim. It stays loaded for the life of the process (libtorch cannot be unloaded
// safely), so there is no Close.
type Lib struct {
	path string
	c    *C.hpat_lib
}

var (
	libsMu sync.Mutex
	libs   = map[string]*Lib{}
)

// Open loads the shim at libPath. Opening the same path twice returns the same *Lib.
func Open(libPath string) (*Lib, error) {
	if libPath == "" {
		libPath = DefaultLibrary
	}
	abs, err := filepath.Abs(libPath)
	if err != nil {
		return nil, &LibraryError{Path: libPath, Reason: err.Error()}
	}
	libsMu.Lock()
	defer libsMu.Unlock()
	if l, ok := libs[abs]; ok {
		return l, nil
	}
	st, err := os.Stat(abs)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, &LibraryError{Path: libPath, Reason: "no such file"}
	case err != nil:
		return nil, &LibraryError{Path: libPath, Reason: err.Error()}
	case st.IsDir():
		return nil, &LibraryError{Path: libPath, Reason: "is a directory"}
	}
	cl := (*C.hpat_lib)(C.calloc(1, C.sizeof_hpat_lib))
	cpath := C.CString(abs)
	defer C.free(unsafe.Pointer(cpath))
	if e := C.hdl_open(cpath, cl); e != nil {
		reason := C.GoString(e)
		C.free(unsafe.Pointer(e))
		if cl.h != nil {
			C.dlclose(cl.h)
		}
		C.free(unsafe.Pointer(cl))
		return nil, &LibraryError{Path: libPath, Reason: reason}
	}
	if v := int(C.hdl_abi_version(cl)); v != ABIVersion {
		C.free(unsafe.Pointer(cl))
		return nil, &LibraryError{Path: libPath, Reason: fmt.Sprintf("shim ABI version %d, this program speaks %d", v, ABIVersion)}
	}
	l := &Lib{path: abs, c: cl}
	libs[abs] = l
	return l, nil
}

// Path is the absolute path the library was loaded from.
func (l *Lib) Path() string { return l.path }

// Version describes the shim and the libtorch it was built against.
func (l *Lib) Version() string { return C.GoString(C.hdl_version(l.c)) }

// SetNumThreads sets libtorch's intra-op thread count (process-wide).
func (l *Lib) SetNumThreads(n int) error {
	var e *C.char
	if C.hdl_set_num_threads(l.c, C.int(n), &e) != 0 {
		return cErr("set_num_threads", e)
	}
	return nil
}

// NumThreads is libtorch's intra-op thread count.
func (l *Lib) NumThreads() int { return int(C.hdl_get_num_threads(l.c)) }

// ManualSeed seeds libtorch's global generators (model initialization uses its own seed, see NewModel).
func (l *Lib) ManualSeed(seed uint64) error {
	var e *C.char
	if C.hdl_manual_seed(l.c, C.uint64_t(seed), &e) != 0 {
		return cErr("manual_seed", e)
	}
	return nil
}

// CUDAAvailable reports whether libtorch was built with CUDA and sees a device.
func (l *Lib) CUDAAvailable() bool { return C.hdl_cuda_available(l.c) != 0 }

// DeviceCount is the number of CUDA devices libtorch sees.
func (l *Lib) DeviceCount() int { return int(C.hdl_cuda_device_count(l.c)) }

// cErr turns a malloc'ed C error string into an *Error and frees it.
func cErr(op string, e *C.char) error {
	msg := "unknown error"
	if e != nil {
		msg = C.GoString(e)
		C.free(unsafe.Pointer(e))
	}
	return &Error{Op: op, Msg: msg}
}
