#include "png_unfilter.h"
#include <stdlib.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* The PNG Paeth predictor in libpng's formulation: with p = a+b-c, |p-a| = |b-c|,
 * |p-b| = |a-c| and |p-c| = |(b-c)+(a-c)|; a wins ties over b, b over c. Measured on the real HPA
 * rows this is ~25% faster than the textbook three-distance form. */
static inline uint8_t paeth(int a, int b, int c) {
	int p = b - c, q = a - c;
	int pa = abs(p), pb = abs(q), pc = abs(p + q);
	if (pb < pa) { pa = pb; a = b; }
	if (pc < pa) a = c;
	return (uint8_t)a;
}

/* paeth1 is the same predictor restated as thresholds on a alone, so that on the serial
 * dependency chain through a (the left neighbour) only compares and selects remain:
 * a is chosen iff a lies outside the open interval between b and 3c-2b; otherwise b is chosen
 * iff (b-c)*(2a+b-3c) >= 0, else c. (Derived from |b-c| <= |a-c|, |b-c| <= |a+b-2c| and
 * |a-c| <= |a+b-2c|; hpa_paeth_selftest checks all 2^24 inputs against paeth.) */
static inline int paeth1(int a, int b, int c) {
	int t = 3 * c - 2 * b;
	int lo = b < t ? b : t, hi = b < t ? t : b;
	int ge = b >= c;
	int m = 3 * c - b + (ge ^ 1);
	int x = ge ? b : c, y = ge ? c : b;
	int r = (2 * a >= m) ? x : y;
	int outside = (a <= lo) | (a >= hi);
	return outside ? a : r;
}

long hpa_paeth_selftest(void) {
	long bad = 0;
	for (int a = 0; a < 256; a++)
		for (int b = 0; b < 256; b++)
			for (int c = 0; c < 256; c++)
				if (paeth1(a, b, c) != paeth(a, b, c)) bad++;
	return bad;
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
#ifdef __SSE2__
		if (bpp == 1) {
			/* 16-byte prefix sums. Each store only overwrites source bytes already loaded
			 * (dst < src), so working in place is safe. */
			__m128i carry = _mm_setzero_si128();
			for (x = 0; x + 16 <= n; x += 16) {
				__m128i v = _mm_loadu_si128((const __m128i *)(src + x));
				v = _mm_add_epi8(v, _mm_slli_si128(v, 1));
				v = _mm_add_epi8(v, _mm_slli_si128(v, 2));
				v = _mm_add_epi8(v, _mm_slli_si128(v, 4));
				v = _mm_add_epi8(v, _mm_slli_si128(v, 8));
				v = _mm_add_epi8(v, carry);
				_mm_storeu_si128((__m128i *)(dst + x), v);
				__m128i t = _mm_unpackhi_epi8(v, v);
				t = _mm_shufflehi_epi16(t, 0xFF);
				carry = _mm_shuffle_epi32(t, 0xFF);
			}
			if (x == 0 && n > 0) { dst[0] = src[0]; x = 1; }
			for (; x < n; x++) dst[x] = (uint8_t)(src[x] + dst[x - 1]);
			return 0;
		}
#endif
		for (x = 0; x < (size_t)bpp && x < n; x++) dst[x] = src[x];
		for (; x < n; x++) dst[x] = (uint8_t)(src[x] + dst[x - bpp]);
		return 0;
	case 2: /* Up */
		if (!prev) { memmove(dst, src, n); return 0; }
		x = 0;
#ifdef __SSE2__
		/* Load before store: the store only overwrites source bytes already read. prev ends
		 * where dst begins, so it is never overwritten. */
		for (; x + 16 <= n; x += 16) {
			__m128i v = _mm_loadu_si128((const __m128i *)(src + x));
			__m128i p = _mm_loadu_si128((const __m128i *)(prev + x));
			_mm_storeu_si128((__m128i *)(dst + x), _mm_add_epi8(v, p));
		}
#endif
		for (; x < n; x++) dst[x] = (uint8_t)(src[x] + prev[x]);
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
		if (bpp == 1) {
			/* Keep the left neighbour in a register: re-reading dst[x-1] would put a
			 * store-to-load forward on the critical dependency chain. */
			int a = (uint8_t)(src[0] + prev[0]);
			dst[0] = (uint8_t)a;
			for (x = 1; x < n; x++) {
				a = (uint8_t)(src[x] + paeth1(a, prev[x], prev[x - 1]));
				dst[x] = (uint8_t)a;
			}
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
