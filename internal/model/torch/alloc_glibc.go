//go:build hpa_glibc_malloc

package torch

// Allocator names the malloc this program was linked with: "tcmalloc", or "glibc" when built with
// -tags hpa_glibc_malloc (for comparison benchmarks only: libtorch training is much slower so).
const Allocator = "glibc"
