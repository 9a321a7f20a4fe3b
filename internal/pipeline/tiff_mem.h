#ifndef HPA_TIFF_MEM_H
#define HPA_TIFF_MEM_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint32_t width, height;
	uint16_t bps, spp, photometric, planar, sampleformat, compression;
	int has_photometric, tiled;
} hpa_tiff_info_t;

/* Both functions parse the TIFF held in data[0:len] (read-only, never retained after return).
 * On failure they return -1, write a NUL-terminated message (at most errlen bytes) to err and set
 * *short_read if libtiff asked for bytes past the end of the data (i.e. the file is truncated). */
int hpa_tiff_info(const uint8_t *data, size_t len, hpa_tiff_info_t *info,
                  char *err, size_t errlen, int *short_read);

/* hpa_tiff_read decodes the first image into out as 8-bit samples: nout == 1 gives sample 0 of
 * each pixel (gray; inverted for MinIsWhite), nout == 3 gives samples 0..2 interleaved (RGB).
 * 16-bit samples are scaled by rounding: (v*255 + 32767) / 65535. outlen must be >= w*h*nout.
 * maxalloc bounds any single libtiff allocation. */
int hpa_tiff_read(const uint8_t *data, size_t len, uint8_t *out, size_t outlen, int nout,
                  int64_t maxalloc, char *err, size_t errlen, int *short_read);
#endif
