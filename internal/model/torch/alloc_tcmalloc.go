//go:build !hpa_glibc_malloc

package torch

// Link tcmalloc into every program that imports this package so the whole process (libtorch
// included, once dlopen'ed) allocates through it. --no-as-needed keeps the library although no Go
// code calls it.

/*
#cgo LDFLAGS: -Wl,--no-as-needed -ltcmalloc_minimal -Wl,--as-needed
*/
import "C"

// Allocator names the malloc this program was linked with: "tcmalloc", or "glibc" when built with
// -tags hpa_glibc_malloc.
const Allocator = "tcmalloc"
