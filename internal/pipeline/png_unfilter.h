#ifndef HPA_PNG_UNFILTER_H
#define HPA_PNG_UNFILTER_H
#include <stddef.h>
#include <stdint.h>

/* hpa_png_unfilter reverses PNG row filters in place. buf holds rows filtered scanlines of
 * 1+rowbytes bytes (filter type byte first); on success the rows*rowbytes unfiltered bytes are
 * compacted at the start of buf. bpp is the filter's bytes per complete pixel (1..8).
 * Returns -1 on success, -2 on bad arguments (buffer too small), or the index (>= 0) of the
 * first row with an invalid filter type. */
long hpa_png_unfilter(uint8_t *buf, size_t buflen, size_t rows, size_t rowbytes, int bpp);

/* hpa_scale16 converts n big-endian 16-bit samples at buf to 8 bits in place:
 * buf[i] = (v*255 + 32767) / 65535. Returns -1 if buflen < 2*n, else 0. */
int hpa_scale16(uint8_t *buf, size_t buflen, size_t n);

/* hpa_paeth_selftest compares the fast 1-byte Paeth predictor with the reference one on all
 * 2^24 (a, b, c) and returns the number of mismatches (0). For tests. */
long hpa_paeth_selftest(void);

#endif
