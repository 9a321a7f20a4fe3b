#include "png_unfilter.h"
#include <string.h>

static inline uint8_t paeth(int a, int b, int c) {
	int p = a + b - c;
	int pa = p > a ? p - a : a - p;
	int pb = p > b ? p - b : b - p;
	int pc = p > c ? p - c : c - p;
	if (pa <= pb && pa <= pc) return (uint8_t)a;
	if (pb <= pc) return (uint8_t)b;
	return (uint8_t)c;
}

/* One row. src (filtered) lies at dst + y + 1 inside the same buffer, so every write to dst[x]
 * lands on a byte of src that has already been read (dst+x < src+x). prev is the previous
 * unfiltered row (it ends where dst begins) or NULL for the first row. */
static inline int unfilter_row(uint8_t *dst, const uint8_t *src, const uint8_t *prev,
                               size_t n, int ft, const int bpp) {
	size_t x;
	switch (ft) {
	case 0: /* None */
		memmove(dst, src, n);
		return 0;
	case 1: /* Sub */
		for (x = 0; x < (size_t)bpp && x < n; x++) dst[x] = src[x];
		for (; x < n; x++) dst[x] = (uint8_t)(src[x] + dst[x - bpp]);
		return 0;
	case 2: /* Up */
		if (!prev) { memmove(dst, src, n); return 0; }
		for (x = 0; x < n; x++) dst[x] = (uint8_t)(src[x] + prev[x]);
		return 0;
	case 3: /* Average */
		if (!prev) {
			for (x = 0; x < (size_t)bpp && x < n; x++) dst[x] = src[x];
			for (; x < n; x++) dst[x] = (uint8_t)(src[x] + (dst[x - bpp] >> 1));
			return 0;
		}
		for (x = 0; x < (size_t)bpp && x < n; x++) dst[x] = (uint8_t)(src[x] + (prev[x] >> 1));
		for (; x < n; x++) dst[x] = (uint8_t)(src[x] + ((dst[x - bpp] + prev[x]) >> 1));
		return 0;
	case 4: /* Paeth */
		if (!prev) { /* paeth(a, 0, 0) == a: same as Sub */
			for (x = 0; x < (size_t)bpp && x < n; x++) dst[x] = src[x];
			for (; x < n; x++) dst[x] = (uint8_t)(src[x] + dst[x - bpp]);
			return 0;
		}
		for (x = 0; x < (size_t)bpp && x < n; x++) dst[x] = (uint8_t)(src[x] + prev[x]);
		for (; x < n; x++) dst[x] = (uint8_t)(src[x] + paeth(dst[x - bpp], prev[x], prev[x - bpp]));
		return 0;
	}
	return -1;
}

static long unfilter_all(uint8_t *buf, size_t rows, size_t rowbytes, const int bpp) {
	const uint8_t *prev = NULL;
	for (size_t y = 0; y < rows; y++) {
		const uint8_t *src = buf + y * (rowbytes + 1);
		uint8_t *dst = buf + y * rowbytes;
		if (unfilter_row(dst, src + 1, prev, rowbytes, src[0], bpp) != 0) return (long)y;
		prev = dst;
	}
	return -1;
}

long hpa_png_unfilter(uint8_t *buf, size_t buflen, size_t rows, size_t rowbytes, int bpp) {
	if (!buf || bpp < 1 || bpp > 8 || rowbytes == 0 || rows == 0) return -2;
	if (rowbytes > (size_t)-1 / 2 || (buflen / (rowbytes + 1)) < rows) return -2;
	/* Constant bpp lets the compiler specialise the loops for the common cases. */
	switch (bpp) {
	case 1: return unfilter_all(buf, rows, rowbytes, 1);
	case 2: return unfilter_all(buf, rows, rowbytes, 2);
	default: return unfilter_all(buf, rows, rowbytes, bpp);
	}
}

int hpa_scale16(uint8_t *buf, size_t buflen, size_t n) {
	if (n > buflen / 2) return -1;
	for (size_t i = 0; i < n; i++) {
		uint32_t v = ((uint32_t)buf[2 * i] << 8) | buf[2 * i + 1];
		buf[i] = (uint8_t)((v * 255u + 32767u) / 65535u);
	}
	return 0;
}
